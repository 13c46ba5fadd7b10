package memlimit

import (
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

func TestSet(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}

	if err := Set(env(map[string]string{Env: "1000000000"}), logger); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 900000000 {
		t.Errorf("limit = %d, want 90%% of the container's, 900000000", got)
	}

	debug.SetMemoryLimit(prev)
	if err := Set(env(map[string]string{Env: "1000000000", "GOMEMLIMIT": "500MiB"}), logger); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != prev {
		t.Errorf("with GOMEMLIMIT set the limit changed to %d; the runtime's own reading must win", got)
	}
	if err := Set(env(nil), logger); err != nil {
		t.Errorf("unset: %v, want nil", err)
	}
	for _, bad := range []string{"512Mi", "-1", "0", "x"} {
		err := Set(env(map[string]string{Env: bad}), logger)
		if err == nil || !strings.Contains(err.Error(), Env) {
			t.Errorf("%s=%q: err = %v, want one naming %s", Env, bad, err, Env)
		}
	}
}
