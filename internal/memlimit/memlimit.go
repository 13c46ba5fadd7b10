// Package memlimit gives the Go runtime a soft memory limit from the
// container's, as the Helm chart passes it.
package memlimit

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
)

// Env names the container's memory limit in bytes, as the Helm
// chart passes it with the downward API (resourceFieldRef limits.memory).
const Env = "JWTAUTHZ_MEMORY_LIMIT"

// Set gives the Go runtime a soft memory limit of 90% of the
// container's, so the garbage collector works harder before the kernel
// kills the pod. GOMEMLIMIT, when set, wins: the runtime read it already.
func Set(getenv func(string) string, logger *slog.Logger) error {
	v := strings.TrimSpace(getenv(Env))
	if v == "" || getenv("GOMEMLIMIT") != "" {
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("%s=%q: want the container's memory limit in bytes", Env, v)
	}
	limit := n / 10 * 9
	debug.SetMemoryLimit(limit)
	logger.Info("Go memory limit set from the container's", "container_limit_bytes", n, "gomemlimit_bytes", limit)
	return nil
}
