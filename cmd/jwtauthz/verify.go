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
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/config"
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
	provs, err := config.BuildProviders(cfg, config.BuildOptions{Now: now, Logger: logger})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := provs.RefreshOnce(ctx); err != nil {
		fmt.Fprintf(env.stderr, "warning: %v\n", err)
	}

	res, provider, err := verifyToken(ctx, provs, raw)
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
// from stdin, with surrounding white space (echo's newline) removed.
func tokenArg(args []string, stdin io.Reader) (string, error) {
	switch len(args) {
	case 0:
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return "", fmt.Errorf("read token from stdin: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	case 1:
		return strings.TrimSpace(args[0]), nil
	}
	return "", errors.New("give one token")
}

// verifyToken judges raw as Check judges the token of an authorization
// header: read with the same parser (a "Bearer " prefix is optional here),
// then verified by the providers.
func verifyToken(ctx context.Context, provs *config.Providers, raw string) (*token.Result, string, error) {
	if len(raw) < 7 || !strings.EqualFold(raw[:7], "bearer ") {
		raw = "Bearer " + raw
	}
	tok, err := authz.ParseBearer(raw)
	if err != nil {
		return nil, "", err
	}
	return provs.Router.Verify(ctx, tok)
}
