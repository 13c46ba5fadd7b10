package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jwtauthz/jwtauthz/authz"
)

func runVerify(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "verify", "--config FILE [--at TIME] [TOKEN]  (the token is read from stdin when not given)")
	cfgPath := fs.String("config", "", "config file (default $JWTAUTHZ_CONFIG)")
	at := fs.String("at", "", "judge the token as of this time: RFC 3339 or Unix seconds (default now)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	now := time.Now
	if *at != "" {
		t, err := parseTime(*at)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--at: %w", err)}
		}
		now = func() time.Time { return t }
	}
	raw, err := tokenArg(fs.Args(), env.stdin)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	cfg, err := loadConfigFlag(env, *cfgPath)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	provs, err := buildProviders(cfg, buildOptions{now: now, logger: logger})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := provs.refreshOnce(ctx); err != nil {
		fmt.Fprintf(env.stderr, "warning: %v\n", err)
	}

	res, provider, err := provs.router.Verify(ctx, raw)
	if err != nil {
		reason := authz.Classify(err)
		if reason == authz.ReasonKeysUnavailable {
			return &exitError{code: 2, err: fmt.Errorf("cannot judge the token: %w", err)}
		}
		fmt.Fprintln(env.stdout, "invalid")
		fmt.Fprintf(env.stdout, "reason:   %s\n", reason)
		fmt.Fprintf(env.stdout, "detail:   %v\n", err)
		if provider != "" {
			fmt.Fprintf(env.stdout, "provider: %s\n", provider)
		}
		return &exitError{code: 1}
	}
	claims, _ := json.MarshalIndent(res.Claims, "", "  ")
	fmt.Fprintln(env.stdout, "valid")
	fmt.Fprintf(env.stdout, "provider: %s\n", res.Provider)
	fmt.Fprintf(env.stdout, "user:     %s\n", res.Username)
	fmt.Fprintf(env.stdout, "expires:  %s\n", res.Expiry.UTC().Format(time.RFC3339))
	fmt.Fprintf(env.stdout, "claims:   %s\n", claims)
	return nil
}

// parseTime reads RFC 3339 or Unix seconds.
func parseTime(s string) (time.Time, error) {
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(secs, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2006-01-02T15:04:05Z) nor Unix seconds", s)
	}
	return t, nil
}

// tokenArg returns the token from the arguments or, when there is none,
// from stdin. A "Bearer " prefix is accepted and dropped.
func tokenArg(args []string, stdin io.Reader) (string, error) {
	var raw string
	switch len(args) {
	case 0:
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return "", fmt.Errorf("read token from stdin: %w", err)
		}
		raw = string(b)
	case 1:
		raw = args[0]
	default:
		return "", errors.New("give one token")
	}
	raw = strings.TrimSpace(raw)
	if len(raw) > 7 && strings.EqualFold(raw[:7], "bearer ") {
		raw = strings.TrimSpace(raw[7:])
	}
	if raw == "" {
		return "", errors.New("no token: pass it as an argument or on stdin")
	}
	return raw, nil
}
