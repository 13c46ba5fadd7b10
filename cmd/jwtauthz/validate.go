package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jwtauthz/jwtauthz/config"
)

// runValidate loads a config exactly as serve would — files read,
// discovery documents and JWK Sets fetched once, schemas compiled, routes
// and admin claims checked — and prints what it found. It never opens the
// store or binds a port, so it runs beside a live serve on the same file.
// Exit 0 valid, 1 invalid, 2 usage.
func runValidate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "validate", "--config FILE")
	cfgPath := fs.String("config", "", "config file (default $JWTAUTHZ_CONFIG)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on fetching every discovery document and JWK Set")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("validate: unexpected argument %q", fs.Arg(0))}
	}
	path, err := configFlag(env, *cfgPath)
	if err != nil {
		return err
	}
	invalid := func(err error) error {
		fmt.Fprintf(env.stdout, "invalid: %s\n", path)
		return &exitError{code: 1, err: err}
	}
	cfg, err := config.Load(path)
	if err != nil {
		return invalid(err)
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	provs, err := config.BuildProviders(cfg, config.BuildOptions{Logger: logger})
	if err != nil {
		return invalid(fmt.Errorf("config %s: %w", path, err))
	}
	if _, err := config.Policy(cfg, provs); err != nil {
		return invalid(fmt.Errorf("config %s: %w", path, err))
	}
	fetchCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := provs.RefreshOnce(fetchCtx); err != nil {
		return invalid(fmt.Errorf("config %s: fetching keys: %w", path, err))
	}
	fmt.Fprintf(env.stdout, "valid: %s\n", path)
	return config.WriteSummary(env.stdout, cfg, provs)
}
