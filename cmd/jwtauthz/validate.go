package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/route"
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
	routes, err := config.Routes(cfg)
	if err != nil {
		return invalid(fmt.Errorf("config %s: %w", path, err))
	}
	fmt.Fprintf(env.stdout, "valid: %s\n", path)
	printSummary(env.stdout, cfg, provs, routes)
	return nil
}

// printSummary lists the providers with their key counts and the routes in
// the order they are tried.
func printSummary(w io.Writer, cfg *config.Config, provs *config.Providers, routes *route.Table) {
	fmt.Fprintln(w, "providers:")
	for _, p := range cfg.Providers {
		var src []string
		if len(p.PEMFiles) > 0 {
			src = append(src, fmt.Sprintf("pem_files %s", strings.Join(p.PEMFiles, " ")))
		}
		for _, kv := range [][2]string{{"jwks_file", p.JWKSFile}, {"jwks_url", keys.RedactURL(p.JWKSURL)}, {"hmac_secret_file", p.HMACSecretFile}} {
			if kv[1] != "" {
				src = append(src, kv[0]+" "+kv[1])
			}
		}
		if p.Discovery {
			src = append(src, "discovery")
		}
		issuer := p.Issuer
		if issuer == "" {
			issuer = "(any; tokens of no other issuer)"
		}
		n := provs.Sources[p.Name].Current().Len()
		fmt.Fprintf(w, "  %s: issuer %s; algorithms %s; %d key%s from %s\n",
			p.Name, issuer, strings.Join(p.Algorithms, " "), n, plural(n), strings.Join(src, ", "))
	}
	fmt.Fprintln(w, "routes (first match wins):")
	for i, r := range routes.Rules() {
		match := "everything else"
		if i < len(cfg.Routes) {
			match = describeMatch(cfg.Routes[i].Match)
		}
		fmt.Fprintf(w, "  %s: %s; %s\n", r.Name, match, describeRule(r))
	}
	if cfg.Admin.Listen != "" {
		fmt.Fprintf(w, "admin API: %s, %d required claim%s\n", cfg.Admin.Listen, len(cfg.Admin.RequireClaims), plural(len(cfg.Admin.RequireClaims)))
	}
	fmt.Fprintf(w, "store: %s (not opened)\n", cfg.Store.String())
}

func describeMatch(m config.RouteMatch) string {
	var parts []string
	for _, kv := range []struct {
		key  string
		vals []string
	}{{"hosts", m.Hosts}, {"methods", m.Methods}, {"paths", m.Paths}, {"path_prefixes", m.PathPrefixes}} {
		if len(kv.vals) > 0 {
			parts = append(parts, kv.key+" "+strings.Join(kv.vals, " "))
		}
	}
	if m.PathRegex != "" {
		parts = append(parts, "path_regex "+m.PathRegex)
	}
	if len(m.ContextExtensions) > 0 {
		parts = append(parts, fmt.Sprintf("context_extensions %v", m.ContextExtensions))
	}
	if len(parts) == 0 {
		return "every request"
	}
	return strings.Join(parts, ", ")
}

func describeRule(r *route.Rule) string {
	parts := []string{"auth " + r.Auth.String()}
	if len(r.Require.Scopes) > 0 {
		parts = append(parts, "scopes "+strings.Join(r.Require.Scopes, " "))
	}
	for _, c := range r.Require.Claims {
		parts = append(parts, fmt.Sprintf("claim %s in %v", c.Path, c.Accept))
	}
	if len(r.Require.Providers) > 0 {
		parts = append(parts, "providers "+strings.Join(r.Require.Providers, " "))
	}
	if r.DryRun {
		parts = append(parts, "dry run")
	}
	return strings.Join(parts, ", ")
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
