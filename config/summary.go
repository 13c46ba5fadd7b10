package config

import (
	"fmt"
	"io"
	"strings"

	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/route"
)

// WriteSummary writes what cfg builds, for a person: the providers with
// their key counts (as provs holds them) and the routes in the order they
// are tried.
func WriteSummary(w io.Writer, cfg *Config, provs *Providers) error {
	routes, err := Routes(cfg)
	if err != nil {
		return err
	}
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
	return nil
}

func describeMatch(m RouteMatch) string {
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
