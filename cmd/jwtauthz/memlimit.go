package main

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
)

// memoryLimitEnv names the container's memory limit in bytes, as the Helm
// chart passes it with the downward API (resourceFieldRef limits.memory).
const memoryLimitEnv = "JWTAUTHZ_MEMORY_LIMIT"

// setMemoryLimit gives the Go runtime a soft memory limit of 90% of the
// container's, so the garbage collector works harder before the kernel
// kills the pod. GOMEMLIMIT, when set, wins: the runtime read it already.
func setMemoryLimit(getenv func(string) string, logger *slog.Logger) error {
	v := strings.TrimSpace(getenv(memoryLimitEnv))
	if v == "" || getenv("GOMEMLIMIT") != "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("%s=%q: want the container's memory limit in bytes", memoryLimitEnv, v)
	}
	limit := n / 10 * 9
	debug.SetMemoryLimit(limit)
	logger.Info("Go memory limit set from the container's", "container_limit_bytes", n, "gomemlimit_bytes", limit)
	return nil
}
