// Package route decides which rule a request falls under (routes and
// default_route): who may do what on which path. A Table is compiled once
// from the config; matching a request allocates nothing and compiles no
// regular expression. The package also holds the path normal form that
// keeps a public prefix from covering a private path, and the conditions
// a verified token must meet (scopes, claims, providers).
package route

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Auth is what a rule asks of the request's token.
type Auth int

const (
	// Required: a valid token, or 401.
	Required Auth = iota
	// Optional: no token is anonymous; a token must be valid.
	Optional
	// None: the token is not read.
	None
)

// ParseAuth reads required, optional or none.
func ParseAuth(s string) (Auth, error) {
	switch s {
	case "required", "":
		return Required, nil
	case "optional":
		return Optional, nil
	case "none":
		return None, nil
	}
	return Required, fmt.Errorf("%q is not required, optional or none", s)
}

func (a Auth) String() string {
	return [...]string{"required", "optional", "none"}[a]
}

// DefaultName names default_route in metrics, logs and dynamic metadata.
const DefaultName = "default"

// Rule is what applies to the requests a route matches.
type Rule struct {
	Name    string
	Auth    Auth
	Require Require
	DryRun  bool // would-be denials are allowed, logged and counted
}

// Match says which requests a route takes. Every field given must match;
// an empty Match matches everything.
type Match struct {
	Hosts             []string // exact, or "*.example.com"; lowercase; the port is ignored
	Methods           []string // uppercase, matched exactly (Route reads a lower-case method both ways)
	Paths             []string // exact
	PathPrefixes      []string // segment-aware: /api matches /api and /api/x, not /apix
	PathRegex         string   // RE2, matched against the whole path
	ContextExtensions map[string]string
}

// Spec is one route as configured.
type Spec struct {
	Rule
	Match Match
}

// Request is what matching reads of a request.
type Request struct {
	Host              string // as sent: any case, may carry a port
	Method            string
	Path              string // without the query
	ContextExtensions map[string]string
}

// Table is the compiled routes and the default rule.
type Table struct {
	routes    []compiled
	def       *Rule
	anyDryRun bool // a rule is in dry run: MatchBad must read a request every way
}

// compiled is a route with its match prepared for cheap evaluation.
type compiled struct {
	rule      Rule
	methods   []string
	paths     []string
	prefixes  []string // without a trailing "/", except the root "/"
	exact     []string // hosts
	suffixes  []string // ".example.com" of "*.example.com"
	regex     *regexp.Regexp
	regexLit  string // the literal prefix every regex match starts with
	ctxExt    map[string]string
	anyMethod bool
	anyPath   bool
	anyHost   bool
}

// Compile checks and prepares routes (first match wins) and the default
// rule. Errors name the route by its position and name.
func Compile(specs []Spec, def Rule) (*Table, error) {
	def.Name = DefaultName
	if err := def.Require.compile(); err != nil {
		return nil, fmt.Errorf("default_route: %w", err)
	}
	t := &Table{def: &def, anyDryRun: def.DryRun}
	for i, s := range specs {
		t.anyDryRun = t.anyDryRun || s.DryRun
		c, err := compile(s)
		if err != nil {
			return nil, fmt.Errorf("routes[%d] (%s): %w", i, s.Name, err)
		}
		t.routes = append(t.routes, c)
	}
	return t, nil
}

func compile(s Spec) (compiled, error) {
	if err := s.Require.compile(); err != nil {
		return compiled{}, err
	}
	m := s.Match
	c := compiled{
		rule:      s.Rule,
		methods:   m.Methods,
		paths:     m.Paths,
		ctxExt:    m.ContextExtensions,
		anyMethod: len(m.Methods) == 0,
		anyPath:   len(m.Paths) == 0 && len(m.PathPrefixes) == 0 && m.PathRegex == "",
		anyHost:   len(m.Hosts) == 0,
	}
	for _, p := range m.PathPrefixes {
		if p != "/" {
			p = strings.TrimSuffix(p, "/")
		}
		c.prefixes = append(c.prefixes, p)
	}
	for _, h := range m.Hosts {
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			c.suffixes = append(c.suffixes, suffix)
		} else {
			c.exact = append(c.exact, h)
		}
	}
	if m.PathRegex != "" {
		re, err := regexp.Compile("^(?:" + m.PathRegex + ")$")
		if err != nil {
			return compiled{}, fmt.Errorf("path_regex: %w", err)
		}
		c.regex = re
		c.regexLit, _ = re.LiteralPrefix()
	}
	return c, nil
}

// Routes is the number of routes, default_route aside.
func (t *Table) Routes() int { return len(t.routes) }

// Names lists the rules' names in order, default_route last.
func (t *Table) Names() []string {
	names := make([]string, 0, len(t.routes)+1)
	for i := range t.routes {
		names = append(names, t.routes[i].rule.Name)
	}
	return append(names, t.def.Name)
}

// Rules lists every rule, default_route last.
func (t *Table) Rules() []*Rule {
	rules := make([]*Rule, 0, len(t.routes)+1)
	for i := range t.routes {
		rules = append(rules, &t.routes[i].rule)
	}
	return append(rules, t.def)
}

// Route returns the rule for r, or an error wrapping ErrBadPath or
// ErrBadMethod when the rules cannot judge r: its method is not a token,
// its path is not in normal form (CheckPath), or r would fall under
// another rule as some servers read it — its method in upper case (Django
// and Flask read "delete" as DELETE; Go and Tomcat do not), or its path
// with "%3B" decoded (Go, nginx) or without ";" parameters (Tomcat, Jetty
// and Spring drop them; Envoy, Go and nginx do not). Where every reading
// gives the same rule, the request is judged by it: "patch" on a route
// that takes any method is fine.
func (t *Table) Route(r *Request) (*Rule, error) {
	if err := CheckMethod(r.Method); err != nil {
		return nil, err
	}
	if err := CheckPath(r.Path); err != nil {
		return nil, err
	}
	rule := t.Match(r)
	upper, params := upperASCII(r.Method), hasParams(r.Path)
	if upper == r.Method && !params {
		return rule, nil // one reading: the common case
	}
	paths := []string{r.Path}
	if params { // as sent; "%3B" decoded ("/x;y" to Go and nginx); ";" parameters dropped (Tomcat)
		paths = append(paths, resolve(r.Path, reading{decode: true, merge: true}), resolve(r.Path, reading{decode: true, merge: true, params: true}))
	}
	methods := []string{r.Method}
	if upper != r.Method {
		methods = append(methods, upper)
	}
	alt := *r
	for _, m := range methods {
		for _, p := range paths {
			if m == r.Method && p == r.Path {
				continue // the reading rule came from
			}
			alt.Method, alt.Path = m, p
			switch other := t.Match(&alt); {
			case other == rule:
			case m != r.Method:
				// The rules' names stay out of the message: it is the
				// body of a 400 any client can provoke.
				return nil, fmt.Errorf("%w: %q in upper case, as some servers read it, falls under another rule", ErrBadMethod, r.Method)
			default:
				return nil, fmt.Errorf("%w: the path falls under another rule with its \";\" parameters decoded or dropped, as some servers read it", ErrBadPath)
			}
		}
	}
	return rule, nil
}

// Match returns the rule of the first route that matches r, or the
// default rule.
func (t *Table) Match(r *Request) *Rule {
	if len(t.routes) == 0 {
		return t.def
	}
	host := hostOnly(r.Host)
	for i := range t.routes {
		if c := &t.routes[i]; c.matches(r, host) {
			return &c.rule
		}
	}
	return t.def
}

// matches evaluates the cheap conditions first and the regex last.
func (c *compiled) matches(r *Request, host string) bool {
	if !c.anyMethod && !slices.Contains(c.methods, r.Method) {
		return false
	}
	if !c.anyPath && !c.matchesPath(r.Path) {
		return false
	}
	if !c.anyHost && !c.matchesHost(host) {
		return false
	}
	for k, v := range c.ctxExt {
		if got, ok := r.ContextExtensions[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// matchesPath holds when any of the path conditions given holds.
func (c *compiled) matchesPath(path string) bool {
	if slices.Contains(c.paths, path) {
		return true
	}
	for _, p := range c.prefixes {
		if HasPrefix(path, p) {
			return true
		}
	}
	return c.regex != nil && strings.HasPrefix(path, c.regexLit) && c.regex.MatchString(path)
}

// HasPrefix reports whether path is prefix or lies below it, segment by
// segment: /api holds /api, /api/ and /api/x, not /apix.
func HasPrefix(path, prefix string) bool {
	if prefix == "/" {
		return strings.HasPrefix(path, "/")
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// matchesHost compares host, lowercase and without its port, with the
// exact hosts and the wildcard suffixes.
func (c *compiled) matchesHost(host string) bool {
	for _, h := range c.exact {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	for _, s := range c.suffixes {
		if len(host) > len(s) && strings.EqualFold(host[len(host)-len(s):], s) {
			return true
		}
	}
	return false
}

// hostOnly drops the port of a Host or :authority value ("[::1]:8080"
// keeps "[::1]") and the trailing dot of a fully qualified name
// ("example.com." is example.com to DNS and to TLS).
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// ValidName reports whether name is a route name: [a-z0-9-]+.
func ValidName(name string) bool { return nameRE.MatchString(name) }

var nameRE = regexp.MustCompile(`^[a-z0-9-]+$`)
