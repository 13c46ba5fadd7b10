package route

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func mustCompile(t testing.TB, specs []Spec, def Rule) *Table {
	t.Helper()
	tb, err := Compile(specs, def)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestMatch(t *testing.T) {
	specs := []Spec{
		{Rule: Rule{Name: "health", Auth: None}, Match: Match{Paths: []string{"/healthz"}}},
		{Rule: Rule{Name: "admin-host"}, Match: Match{Hosts: []string{"admin.example.com"}}},
		{Rule: Rule{Name: "wildcard-host"}, Match: Match{Hosts: []string{"*.internal.example.com"}, PathPrefixes: []string{"/"}}},
		{Rule: Rule{Name: "orders-read"}, Match: Match{Methods: []string{"GET", "HEAD"}, PathPrefixes: []string{"/api/orders"}}},
		{Rule: Rule{Name: "orders-write"}, Match: Match{PathPrefixes: []string{"/api/orders/"}}},
		{Rule: Rule{Name: "versioned"}, Match: Match{PathRegex: `/api/v[0-9]+/items`}},
		{Rule: Rule{Name: "envoy-route"}, Match: Match{ContextExtensions: map[string]string{"route": "billing", "tier": "gold"}}},
		{Rule: Rule{Name: "catch-static"}, Match: Match{PathPrefixes: []string{"/static/"}}},
	}
	tb := mustCompile(t, specs, Rule{})
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"exact path", Request{Method: "GET", Path: "/healthz"}, "health"},
		{"exact path, not a prefix", Request{Method: "GET", Path: "/healthz/x"}, DefaultName},
		{"exact host, any case and port", Request{Host: "Admin.Example.com:8443", Method: "POST", Path: "/x"}, "admin-host"},
		{"wildcard host", Request{Host: "a.b.internal.example.com", Method: "GET", Path: "/x"}, "wildcard-host"},
		{"wildcard does not match the bare domain", Request{Host: "internal.example.com", Method: "GET", Path: "/x"}, DefaultName},
		{"method and prefix", Request{Method: "GET", Path: "/api/orders"}, "orders-read"},
		{"prefix below", Request{Method: "HEAD", Path: "/api/orders/42"}, "orders-read"},
		{"prefix is segment-aware", Request{Method: "GET", Path: "/api/ordersx"}, DefaultName},
		{"other method falls through to the next route", Request{Method: "POST", Path: "/api/orders/42"}, "orders-write"},
		{"trailing-slash prefix holds the bare path", Request{Method: "POST", Path: "/api/orders"}, "orders-write"},
		{"whole-path regex", Request{Method: "GET", Path: "/api/v12/items"}, "versioned"},
		{"regex is anchored", Request{Method: "GET", Path: "/x/api/v1/items/y"}, DefaultName},
		{"context extensions all present", Request{Method: "GET", Path: "/y", ContextExtensions: map[string]string{"route": "billing", "tier": "gold", "x": "1"}}, "envoy-route"},
		{"context extensions one missing", Request{Method: "GET", Path: "/y", ContextExtensions: map[string]string{"route": "billing"}}, DefaultName},
		{"context extensions other value", Request{Method: "GET", Path: "/y", ContextExtensions: map[string]string{"route": "billing", "tier": "silver"}}, DefaultName},
		{"first match wins", Request{Host: "admin.example.com", Method: "GET", Path: "/healthz"}, "health"},
		{"a fully qualified host (trailing dot) is the same host", Request{Host: "admin.example.com.", Method: "GET", Path: "/x"}, "admin-host"},
		{"trailing dot and port", Request{Host: "ADMIN.example.com.:443", Method: "GET", Path: "/x"}, "admin-host"},
		{"wildcard with a trailing dot", Request{Host: "a.internal.example.com.", Method: "GET", Path: "/x"}, "wildcard-host"},
		{"default", Request{Method: "GET", Path: "/other"}, DefaultName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tb.Match(&tt.req).Name; got != tt.want {
				t.Errorf("Match(%+v) = %q, want %q", tt.req, got, tt.want)
			}
		})
	}
	if got := tb.Names(); strings.Join(got, ",") != "health,admin-host,wildcard-host,orders-read,orders-write,versioned,envoy-route,catch-static,default" {
		t.Errorf("Names = %v", got)
	}
}

func TestMatchAllocatesNothing(t *testing.T) {
	tb := mustCompile(t, []Spec{
		{Rule: Rule{Name: "a"}, Match: Match{Hosts: []string{"*.example.com"}, PathRegex: `/v[0-9]+/x`}},
		{Rule: Rule{Name: "b"}, Match: Match{Methods: []string{"POST"}, PathPrefixes: []string{"/b"}}},
	}, Rule{})
	req := Request{Host: "api.example.com:443", Method: "GET", Path: "/v2/x"}
	if n := testing.AllocsPerRun(100, func() { tb.Match(&req) }); n != 0 {
		t.Errorf("Match allocates %v times per call, want 0", n)
	}
}

func TestCompileRefusesBadRegex(t *testing.T) {
	_, err := Compile([]Spec{{Rule: Rule{Name: "x"}, Match: Match{PathRegex: "(unclosed"}}}, Rule{})
	if err == nil || !strings.Contains(err.Error(), "routes[0] (x): path_regex") {
		t.Errorf("Compile = %v, want an error naming routes[0] (x): path_regex", err)
	}
}

func TestCheckPath(t *testing.T) {
	good := []string{"", "/", "/a", "/a/", "/a/b.c", "/a/..b", "/a/b..", "/.well-known/x", "/a%20b", "/a%3Fb", "/a%25b", "/~user", "/c%23",
		"/100%25", "/a%2520b", "/a;v=1", "/a;", "/admin;jsessionid=x", "/a%3Bb", "/a/b;x=1/c", "/%C3%A9t%C3%A9"}
	for _, p := range good {
		if err := CheckPath(p); err != nil {
			t.Errorf("CheckPath(%q) = %v, want nil", p, err)
		}
	}
	bad := []string{
		"a", "*", "//", "/a//b", "//a", "/.", "/./a", "/a/.", "/a/./b", "/..", "/a/..", "/a/../b",
		"/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb", "/a%2eb", "/a%2E%2E/b", "/%2e%2e/admin", "/a\\b",
		"/p%75blic", "/a%7E", "/a%", "/a%2", "/a%zz",
		// A segment that is a dot or empty but for its ";" parameters, which
		// Tomcat and Jetty drop: /public/..;/admin is /admin there.
		"/public/..;/admin", "/public/..%3b/admin", "/public/..%3B/admin", "/a/.;x/b", "/;x/admin", "/a/;/b",
		// A fragment; a character encoded twice; an overlong UTF-8 ".".
		"/admin#x", "/%252e%252e/admin", "/a%252Fb", "/a%2541", "/a%255c", "/%c0%ae%c0%ae/admin", "/a%C1%9C",
	}
	for _, p := range bad {
		if err := CheckPath(p); !errors.Is(err, ErrBadPath) {
			t.Errorf("CheckPath(%q) = %v, want ErrBadPath", p, err)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := map[string]string{
		"/public/../admin":      "/admin",
		"/public/%2e%2e/admin":  "/admin",
		"/public%2f..%2fadmin":  "/admin",
		"/public\\..\\admin":    "/admin",
		"//a///b/":              "/a/b/",
		"/a/./b/.":              "/a/b/",
		"/../../x":              "/x",
		"/p%75blic/x":           "/public/x",
		"/already/normal":       "/already/normal",
		"/a%20b":                "/a%20b",
		"/api/orders/..":        "/api/",
		"/api/orders/../../etc": "/etc",
		"/public/..;/admin":     "/admin",
		"/admin;jsessionid=x/y": "/admin/y",
		"/public/..%3b/admin":   "/admin",
		"/admin#/../public":     "/admin",
	}
	for in, want := range tests {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestMatchBad: a dry run covers a request refused before any rule only
// when every reading of it — as sent, and as each kind of server reads it —
// falls under a route in dry run, and its path cannot climb to a parent on
// any server.
func TestMatchBad(t *testing.T) {
	tb := mustCompile(t, []Spec{
		{Rule: Rule{Name: "beta-delete"}, Match: Match{Methods: []string{"DELETE"}, PathPrefixes: []string{"/beta"}}},
		{Rule: Rule{Name: "admin"}, Match: Match{PathPrefixes: []string{"/admin"}}},
		{Rule: Rule{Name: "beta", DryRun: true}, Match: Match{PathPrefixes: []string{"/beta"}}},
		{Rule: Rule{Name: "gamma", DryRun: true}, Match: Match{PathPrefixes: []string{"/gamma"}}},
		{Rule: Rule{Name: "files-a"}, Match: Match{PathRegex: `/files/A[^/]*`}},
		{Rule: Rule{Name: "files", DryRun: true}, Match: Match{PathPrefixes: []string{"/files"}}},
		{Rule: Rule{Name: "ops-get", DryRun: true}, Match: Match{Methods: []string{"GET"}, PathPrefixes: []string{"/ops"}}},
		{Rule: Rule{Name: "ops"}, Match: Match{PathPrefixes: []string{"/ops"}}},
	}, Rule{DryRun: true})
	tests := []struct {
		method, path string
		want         string
		covered      bool
	}{
		{"GET", "/beta/./x", "beta", true}, // every reading is /beta/x or /beta/./x
		{"GET", "/beta//x", "beta", true},  // merged or not
		{"GET", "/beta%2Fx", "beta", true},
		{"GET", "/b%65ta/x", "beta", true},               // as sent, the default rule: in dry run here too
		{"GET", "/other//x", DefaultName, true},          // the default rule in dry run
		{"GET", "/beta/../gamma", "gamma", false},        // both in dry run, but ".." never rides one
		{"GET", "/admin/..%2Fbeta", "admin", false},      // a server that keeps %2F stays under /admin
		{"GET", "/beta/..%2F..%2Fadmin", "admin", false}, // one that decodes it goes to /admin
		{"GET", "/beta/x//../../admin", "admin", false},  // merged: /admin; unmerged: /beta/admin
		{"GET", "/beta/..;/admin", "admin", false},       // Tomcat drops ";" and resolves /admin
		{"GET", "/beta/..%3B/admin", "admin", false},     // and one that decodes %3B first
		{"GET", "/beta\\..\\admin", "admin", false},      // IIS reads "\" as "/"
		{"GET", "/admin;x", "admin", false},
		{"GET", "/admin#x", "admin", false},                   // nginx stops at "#"
		{"GET", "/beta/../admin#/../../beta", "admin", false}, // resolved before the "#"
		{"GET", "/beta/%u002e%u002e/admin", "beta", false},    // IIS's %u encoding: no reading decodes it, none is trusted
		{"GET", "/beta/x#y", "beta", false},                   // a fragment is never covered
		{"get", "/beta/x", "beta", true},                      // GET and get both fall in beta
		{"delete", "/beta/x", "beta-delete", false},           // DELETE falls under an enforced rule
		{"delete", "/beta/./x", "beta-delete", false},
		{"GET", "/files/%41\\b", "files-a", false}, // decoded, "\\" kept (Go, nginx): under the regex
		{"get", "/ops/./x", "ops", false},          // as sent, get is not GET: the enforced rule
		{"GET", "/beta/./%2541", "beta", false},    // %25: a second decode is never trusted
	}
	for _, tt := range tests {
		rule, covered := tb.MatchBad(&Request{Method: tt.method, Path: tt.path})
		if rule.Name != tt.want || covered != tt.covered {
			t.Errorf("MatchBad(%s %q) = %q, covered %v; want %q, covered %v", tt.method, tt.path, rule.Name, covered, tt.want, tt.covered)
		}
	}
	long := "/beta/./" + strings.Repeat("x", maxReadPath)
	if rule, covered := tb.MatchBad(&Request{Method: "GET", Path: long}); rule.Name != "beta" || covered {
		t.Errorf("MatchBad(a path over %d bytes) = %q, covered %v; want beta, not covered", maxReadPath, rule.Name, covered)
	}
	// Without a rule in dry run, one reading decides and nothing is covered.
	plain := mustCompile(t, []Spec{{Rule: Rule{Name: "admin"}, Match: Match{PathPrefixes: []string{"/admin"}}}}, Rule{})
	if rule, covered := plain.MatchBad(&Request{Method: "GET", Path: "/public/../admin"}); rule.Name != "admin" || covered {
		t.Errorf("MatchBad without dry runs = %q, covered %v; want admin, false", rule.Name, covered)
	}
}

func TestCheckMethod(t *testing.T) {
	for _, m := range []string{"", "GET", "DELETE", "M-SEARCH", "PROPFIND", "BASELINE-CONTROL", "get", "patch"} {
		if err := CheckMethod(m); err != nil {
			t.Errorf("CheckMethod(%q) = %v, want nil", m, err)
		}
	}
	for _, m := range []string{"GE T", "GET\n", "\u00c4GET", "GET/", "GET:", "(GET)"} {
		if err := CheckMethod(m); !errors.Is(err, ErrBadMethod) {
			t.Errorf("CheckMethod(%q) = %v, want ErrBadMethod", m, err)
		}
	}
}

// TestRoute: a request is judged by its rule when every way servers read
// it (its method in upper case or not, its path with or without ";"
// parameters) gives that rule, and refused when they disagree.
func TestRoute(t *testing.T) {
	tb := mustCompile(t, []Spec{
		{Rule: Rule{Name: "cors", Auth: None}, Match: Match{Methods: []string{"OPTIONS"}}},
		{Rule: Rule{Name: "public", Auth: None}, Match: Match{PathPrefixes: []string{"/public"}}},
		{Rule: Rule{Name: "admin"}, Match: Match{PathPrefixes: []string{"/admin"}}},
		{Rule: Rule{Name: "api-delete"}, Match: Match{Methods: []string{"DELETE"}, PathPrefixes: []string{"/api"}}},
		{Rule: Rule{Name: "api"}, Match: Match{PathPrefixes: []string{"/api"}}},
		{Rule: Rule{Name: "exact"}, Match: Match{Paths: []string{"/report"}}},
		{Rule: Rule{Name: "internal"}, Match: Match{Paths: []string{"/x;internal"}}},
	}, Rule{Auth: None})
	tests := []struct {
		method, path string
		want         string // "" for an error
		wantErr      error
	}{
		{"GET", "/public/x", "public", nil},
		{"patch", "/public/x", "public", nil},          // every reading: public
		{"options", "/admin/users", "", ErrBadMethod},  // OPTIONS would be cors, auth none
		{"delete", "/api/orders/7", "", ErrBadMethod},  // DELETE would be api-delete
		{"post", "/api/orders", "api", nil},            // POST is api too
		{"GET", "/public/a;v=1", "public", nil},        // matrix parameters that change nothing
		{"GET", "/admin/x;jsessionid=1", "admin", nil}, // under /admin either way
		{"GET", "/admin;jsessionid=1", "", ErrBadPath}, // /admin to Tomcat, not /admin to Envoy
		{"GET", "/report;v=2", "", ErrBadPath},         // the exact path only without the parameter
		{"GET", "/public%3Bx/../admin", "", ErrBadPath},
		{"GET", "/public/..;/admin", "", ErrBadPath},
		{"GE T", "/public/x", "", ErrBadMethod},
		{"GET", "/x%3Binternal", "", ErrBadPath}, // /x;internal to Go and nginx
		{"GET", "/x;internal", "", ErrBadPath},   // /x to Tomcat: a rule with ";" is never judged alone
		{"GET", "/y%3Bz", "default", nil},        // /y;z and /y: the default either way
	}
	for _, tt := range tests {
		rule, err := tb.Route(&Request{Method: tt.method, Path: tt.path})
		switch {
		case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
			t.Errorf("Route(%s %q) = %v, want %v", tt.method, tt.path, err, tt.wantErr)
		case tt.wantErr == nil && (err != nil || rule.Name != tt.want):
			t.Errorf("Route(%s %q) = %v, %v; want %q", tt.method, tt.path, rule, err, tt.want)
		}
	}
}

func TestRequire(t *testing.T) {
	rule := Rule{Name: "r", Require: Require{
		Scopes:    []string{"orders:write"},
		Claims:    []ClaimCondition{{Path: "realm_access.roles", Accept: []any{"admin", "ops"}}, {Path: "level", Accept: []any{2}}},
		Providers: []string{"corp"},
	}}
	if err := rule.Require.compile(); err != nil {
		t.Fatal(err)
	}
	ok := fakeToken{provider: "corp", scopes: []string{"orders:read", "orders:write"}, claims: map[string]any{
		"realm_access.roles": []any{"dev", "ops"}, "level": json.Number("2.0"),
	}}
	if err := rule.Check(ok); err != nil {
		t.Errorf("Check(all held) = %v, want nil", err)
	}
	tests := []struct {
		name    string
		mod     func(t *fakeToken)
		wantErr error
		want    string
	}{
		{"other provider", func(t *fakeToken) { t.provider = "partner" }, ErrForbidden, `providers ["corp"]`},
		{"scope missing", func(t *fakeToken) { t.scopes = []string{"orders:read"} }, ErrInsufficientScope, "lacks orders:write"},
		{"claim not among the accepted", func(t *fakeToken) {
			t.claims = map[string]any{"realm_access.roles": []any{"dev"}, "level": json.Number("2")}
		}, ErrForbidden, `claim "realm_access.roles"`},
		{"claim absent", func(t *fakeToken) { t.claims = map[string]any{"level": json.Number("2")} }, ErrForbidden, `claim "realm_access.roles"`},
		{"number is not a string", func(t *fakeToken) { t.claims = map[string]any{"realm_access.roles": "admin", "level": "2"} }, ErrForbidden, `claim "level"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := ok
			tt.mod(&tok)
			err := rule.Check(tok)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %v, want %v naming %q", err, tt.wantErr, tt.want)
			}
		})
	}
}

func TestParseScopes(t *testing.T) {
	got := ParseScopes("a b  c", []any{"d", 1, "e"})
	if strings.Join(got, ",") != "a,b,c,d,e" {
		t.Errorf("ParseScopes = %q", got)
	}
	if got := ParseScopes(nil, "x y"); strings.Join(got, ",") != "x,y" {
		t.Errorf("ParseScopes(scp string) = %q", got)
	}
	// RFC 6749 §3.3: scopes are separated by spaces alone. A tab or a
	// newline inside a scope string never makes a second scope.
	if got := ParseScopes("read\twrite x\ny\u00a0z", nil); strings.Join(got, "|") != "read\twrite|x\ny\u00a0z" {
		t.Errorf("ParseScopes(tab, newline, no-break space) = %q, want two scopes", got)
	}
}

// fakeToken is a verified token's view, as the Check path gives it.
type fakeToken struct {
	provider string
	scopes   []string
	claims   map[string]any // by dotted path
}

func (f fakeToken) Provider() string { return f.provider }
func (f fakeToken) Scopes() []string { return f.scopes }
func (f fakeToken) Claim(p string) (any, bool) {
	v, ok := f.claims[p]
	return v, ok
}

// BenchmarkMatch100 matches a request that none of 100 mixed routes
// takes, so all are evaluated: the worst case of a table that size.
func BenchmarkMatch100(b *testing.B) {
	specs := make([]Spec, 100)
	for i := range specs {
		var m Match
		switch i % 4 {
		case 0:
			m.PathPrefixes = []string{"/svc" + strings.Repeat("x", i%7), "/api/v1/svc" + strings.Repeat("y", i%5)}
		case 1:
			m.PathRegex = `/api/v[0-9]+/items` + strings.Repeat("z", 1+i%9) + `/[a-z0-9-]+`
		case 2:
			m.Hosts = []string{"svc.example.com", "*.svc.example.net"}
		case 3:
			m.Methods = []string{"POST", "PUT"}
			m.PathPrefixes = []string{"/api"}
		}
		specs[i] = Spec{Rule: Rule{Name: "r"}, Match: m}
	}
	tb := mustCompile(b, specs, Rule{})
	req := Request{Host: "api.example.com:443", Method: "GET", Path: "/api/v1/items/42"}
	b.ReportAllocs()
	for b.Loop() {
		if tb.Match(&req).Name != DefaultName {
			b.Fatal("matched")
		}
	}
}
