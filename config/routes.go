package config

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/jwtauthz/jwtauthz/authz/route"
)

// Route is one entry of routes: which requests it takes, and the rule
// for them. First match wins.
type Route struct {
	Name    string     `yaml:"name"`
	Match   RouteMatch `yaml:"match"`
	Auth    string     `yaml:"auth"`
	Require Require    `yaml:"require"`
	Mode    string     `yaml:"mode"`
}

// RouteMatch is routes[].match; every field given must match.
type RouteMatch struct {
	Hosts             []string          `yaml:"hosts"`
	Methods           []string          `yaml:"methods"`
	Paths             []string          `yaml:"paths"`
	PathPrefixes      []string          `yaml:"path_prefixes"`
	PathRegex         string            `yaml:"path_regex"`
	ContextExtensions map[string]string `yaml:"context_extensions"`
}

// DefaultRoute is default_route: the rule of a request no route matches.
type DefaultRoute struct {
	Auth    string  `yaml:"auth"`
	Require Require `yaml:"require"`
	Mode    string  `yaml:"mode"`
}

// Require is what a token must hold on a route (require.*).
type Require struct {
	Scopes    []string       `yaml:"scopes"`
	Claims    map[string]any `yaml:"claims"`
	Providers []string       `yaml:"providers"`
}

// The route modes.
const (
	ModeEnforce = "enforce"
	ModeDryRun  = "dry_run"
)

var (
	methodRE = regexp.MustCompile(`^[A-Z]+$`)
	hostRE   = regexp.MustCompile(`^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$`)
)

// validateRoutes checks routes and default_route against the providers.
func (c *Config) validateRoutes() []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	providers := make([]string, len(c.Providers))
	for i, p := range c.Providers {
		providers[i] = p.Name
	}
	seen := map[string]bool{}
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		switch {
		case !route.ValidName(r.Name):
			add(key+".name", "%q must match [a-z0-9-]+", r.Name)
		case r.Name == route.DefaultName:
			add(key+".name", "%q names default_route in metrics and logs; choose another name", r.Name)
		case seen[r.Name]:
			add(key+".name", "%q is used by another route; names must be unique", r.Name)
		}
		seen[r.Name] = true
		errs = append(errs, r.Match.validate(key+".match")...)
		errs = append(errs, validateRule(key, r.Auth, r.Require, r.Mode, providers)...)
	}
	d := c.DefaultRoute
	errs = append(errs, validateRule("default_route", d.Auth, d.Require, d.Mode, providers)...)
	return errs
}

func (m *RouteMatch) validate(key string) []error {
	var errs []error
	add := func(k, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key + "." + k, Msg: fmt.Sprintf(format, args...)})
	}
	for i, h := range m.Hosts {
		if !hostRE.MatchString(h) {
			add(fmt.Sprintf("hosts[%d]", i), "%q is not a lowercase host name or *.suffix (the port is ignored, leave it out)", h)
		}
	}
	for i, v := range m.Methods {
		if !methodRE.MatchString(v) {
			add(fmt.Sprintf("methods[%d]", i), "%q is not an uppercase HTTP method", v)
		}
	}
	for name, paths := range map[string][]string{"paths": m.Paths, "path_prefixes": m.PathPrefixes} {
		for i, p := range paths {
			if err := route.CheckPath(p); err != nil || p == "" || strings.Contains(p, "?") {
				add(fmt.Sprintf("%s[%d]", name, i), "%q is not a path in normal form (starts with /, no query, no . or .. or empty segment, no encoded / \\ or unreserved character)", p)
			}
		}
	}
	if m.PathRegex != "" {
		if _, err := regexp.Compile(m.PathRegex); err != nil {
			add("path_regex", "not an RE2 regular expression: %v", err)
		}
	}
	for k := range m.ContextExtensions {
		if k == "" {
			add("context_extensions", "a key is empty")
		}
	}
	return errs
}

func validateRule(key, auth string, req Require, mode string, providers []string) []error {
	var errs []error
	add := func(k, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key + "." + k, Msg: fmt.Sprintf(format, args...)})
	}
	a, err := route.ParseAuth(auth)
	if err != nil {
		add("auth", "%v", err)
	}
	if mode != "" && mode != ModeEnforce && mode != ModeDryRun {
		add("mode", "%q is not enforce or dry_run", mode)
	}
	hasReq := len(req.Scopes) > 0 || len(req.Claims) > 0 || len(req.Providers) > 0
	if a == route.None && err == nil && hasReq {
		add("require", "is set but auth is none: no token is read, so there is nothing to require")
	}
	for i, s := range req.Scopes {
		if s == "" || strings.ContainsAny(s, " \t") {
			add(fmt.Sprintf("require.scopes[%d]", i), "%q is not a scope (one word)", s)
		}
	}
	for i, p := range req.Providers {
		if !slices.Contains(providers, p) {
			add(fmt.Sprintf("require.providers[%d]", i), "%q is not a configured provider (%s)", p, strings.Join(providers, ", "))
		}
	}
	if _, err := claimConditions(req.Claims); err != nil {
		add("require.claims", "%v", err)
	}
	return errs
}

// claimConditions turns a claims map into conditions, sorted by path: a
// key is a dotted path, a nested map reads as nested paths
// ({realm_access: {roles: admin}} is realm_access.roles), a value is one
// accepted value or a list of them.
func claimConditions(m map[string]any) ([]route.ClaimCondition, error) {
	var out []route.ClaimCondition
	var walk func(prefix string, m map[string]any) error
	walk = func(prefix string, m map[string]any) error {
		for k, v := range m {
			path := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				if err := walk(path+".", sub); err != nil {
					return err
				}
				continue
			}
			cc := route.ClaimCondition{Path: path}
			if list, ok := v.([]any); ok {
				cc.Accept = list
			} else {
				cc.Accept = []any{v}
			}
			if err := cc.Compile(); err != nil {
				return err
			}
			out = append(out, cc)
		}
		return nil
	}
	if err := walk("", m); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// Routes builds the route table of cfg.
func Routes(cfg *Config) (*route.Table, error) {
	rule := func(name, auth string, req Require, mode string) (route.Rule, error) {
		a, err := route.ParseAuth(auth)
		if err != nil {
			return route.Rule{}, err
		}
		claims, err := claimConditions(req.Claims)
		if err != nil {
			return route.Rule{}, err
		}
		return route.Rule{
			Name:    name,
			Auth:    a,
			Require: route.Require{Scopes: req.Scopes, Claims: claims, Providers: req.Providers},
			DryRun:  mode == ModeDryRun,
		}, nil
	}
	specs := make([]route.Spec, len(cfg.Routes))
	for i, r := range cfg.Routes {
		ru, err := rule(r.Name, r.Auth, r.Require, r.Mode)
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		m := r.Match
		specs[i] = route.Spec{Rule: ru, Match: route.Match{
			Hosts: m.Hosts, Methods: m.Methods, Paths: m.Paths, PathPrefixes: m.PathPrefixes,
			PathRegex: m.PathRegex, ContextExtensions: m.ContextExtensions,
		}}
	}
	d := cfg.DefaultRoute
	def, err := rule(route.DefaultName, d.Auth, d.Require, d.Mode)
	if err != nil {
		return nil, fmt.Errorf("default_route: %w", err)
	}
	return route.Compile(specs, def)
}
