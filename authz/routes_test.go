package authz_test

import (
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/claims"
	"github.com/jwtauthz/jwtauthz/authz/route"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

const partnerIssuer = "https://partner.example.com"

// routesFixture is a Check server with two providers (default, and
// partner routed by issuer) and the route table of the README's example.
type routesFixture struct {
	*fixture
	metrics *authz.Metrics
	reg     *prometheus.Registry
	key     jwt.SigningMethod
	dflt    any // default's private key
	partner any // partner's private key
}

func startRoutes(t *testing.T) *routesFixture {
	t.Helper()
	dk, pk := rsaKey(t), rsaKey(t)
	schema, err := claims.Compile("")
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	router, err := token.NewRouter([]*token.Verifier{
		token.NewVerifier(token.Options{Provider: "default", Algorithms: []string{"RS256"}, Keys: staticKeys(&dk.PublicKey), Schema: schema, Now: clock}),
		token.NewVerifier(token.Options{Provider: "partner", Issuer: partnerIssuer, Algorithms: []string{"RS256"}, Keys: staticKeys(&pk.PublicKey), Schema: schema, Now: clock}),
	})
	if err != nil {
		t.Fatal(err)
	}
	claim := func(path string, accept ...any) route.ClaimCondition {
		return route.ClaimCondition{Path: path, Accept: accept}
	}
	table, err := route.Compile([]route.Spec{
		{Rule: route.Rule{Name: "health", Auth: route.None}, Match: route.Match{Paths: []string{"/healthz"}}},
		{Rule: route.Rule{Name: "public", Auth: route.None}, Match: route.Match{PathPrefixes: []string{"/public"}}},
		{Rule: route.Rule{Name: "catalog", Auth: route.Optional}, Match: route.Match{PathPrefixes: []string{"/catalog"}}},
		{Rule: route.Rule{Name: "orders-read", Require: route.Require{Scopes: []string{"orders:read"}}},
			Match: route.Match{Methods: []string{"GET", "HEAD"}, PathPrefixes: []string{"/api/orders"}}},
		{Rule: route.Rule{Name: "orders-write", Require: route.Require{Scopes: []string{"orders:write"}}},
			Match: route.Match{PathPrefixes: []string{"/api/orders"}}},
		{Rule: route.Rule{Name: "admin", Require: route.Require{Claims: []route.ClaimCondition{claim("realm_access.roles", "admin")}}},
			Match: route.Match{PathPrefixes: []string{"/admin"}}},
		{Rule: route.Rule{Name: "partner-api", Require: route.Require{Providers: []string{"partner"}}},
			Match: route.Match{Hosts: []string{"partner.example.com"}}},
		{Rule: route.Rule{Name: "billing", Require: route.Require{Claims: []route.ClaimCondition{claim("tier", "gold", "platinum")}}},
			Match: route.Match{ContextExtensions: map[string]string{"route": "billing"}}},
		{Rule: route.Rule{Name: "reports", Auth: route.Required}, Match: route.Match{PathRegex: `/v[0-9]+/reports`}},
		{Rule: route.Rule{Name: "beta", DryRun: true, Require: route.Require{Scopes: []string{"beta"}}},
			Match: route.Match{PathPrefixes: []string{"/beta"}}},
	}, route.Rule{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := authz.NewMetrics(reg)
	f := start(t, fixtureOptions{verifier: router, routes: table, metrics: m, providers: []string{"default", "partner"}})
	return &routesFixture{fixture: f, metrics: m, reg: reg, key: jwt.SigningMethodRS256, dflt: dk, partner: pk}
}

func (f *routesFixture) token(t *testing.T, user string, extra jwt.MapClaims) string {
	t.Helper()
	c := claimsFor(user)
	for k, v := range extra {
		c[k] = v
	}
	key := f.dflt
	if c["iss"] == partnerIssuer {
		key = f.partner
	}
	return mint(t, f.key, key, c, nil)
}

// routed is a CheckRequest for method, host and path, with headers and
// Envoy's per-route context_extensions.
func routed(method, host, path string, headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	req := requestAt(path, headers)
	h := req.GetAttributes().GetRequest().GetHttp()
	h.Method, h.Host = method, host
	h.Headers[":method"], h.Headers[":authority"] = method, host
	req.GetAttributes().ContextExtensions = ext
	return req
}

func TestRoutes(t *testing.T) {
	f := startRoutes(t)
	alice := f.token(t, "alice", jwt.MapClaims{"scope": "orders:read profile"})
	writer := f.token(t, "wendy", jwt.MapClaims{"scp": []any{"orders:read", "orders:write"}})
	entra := f.token(t, "eve", jwt.MapClaims{"scp": "orders:write orders:read"}) // Entra ID's space-separated scp
	admin := f.token(t, "root", jwt.MapClaims{"realm_access": map[string]any{"roles": []any{"dev", "admin"}}})
	flatAdmin := f.token(t, "mallory", jwt.MapClaims{"realm_access.roles": "admin", "realm_access": map[string]any{"roles": []any{"dev"}}})
	partner := f.token(t, "pat", jwt.MapClaims{"iss": partnerIssuer})
	gold := f.token(t, "goldie", jwt.MapClaims{"tier": "gold"})
	tabbed := f.token(t, "tab", jwt.MapClaims{"scope": "x\torders:write"})
	expired := mint(t, f.key, f.dflt, jwt.MapClaims{"username": "old", "exp": now.Add(-time.Hour).Unix()}, nil)
	bearerOf := func(tok string) map[string]string {
		return map[string]string{"authorization": "Bearer " + tok, "x-auth-user": "spoofed"}
	}

	tests := []struct {
		name      string
		req       *authv3.CheckRequest
		wantRoute string
		wantCode  codes.Code
		wantHTTP  int    // denied responses
		reason    string // denied body's error, or dry_run_deny
		wantUser  string // allowed with identity; "" for anonymous
		wantChal  string // a substring of www-authenticate; "-" for none
	}{
		{name: "auth none: no token", req: routed("GET", "api.example.com", "/healthz", nil, nil), wantRoute: "health", wantCode: codes.OK},
		{name: "auth none: an invalid token is not read", req: routed("GET", "api.example.com", "/public/x", bearerOf("garbage"), nil), wantRoute: "public", wantCode: codes.OK},
		{name: "optional without a token", req: routed("GET", "api.example.com", "/catalog/1", nil, nil), wantRoute: "catalog", wantCode: codes.OK},
		{name: "optional with a valid token", req: routed("GET", "api.example.com", "/catalog/1", bearerOf(alice), nil), wantRoute: "catalog", wantCode: codes.OK, wantUser: "alice"},
		{name: "optional with an invalid token", req: routed("GET", "api.example.com", "/catalog/1", bearerOf(expired), nil), wantRoute: "catalog", wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "expired", wantChal: `error="invalid_token"`},
		{name: "required without a token", req: routed("GET", "api.example.com", "/other", nil, nil), wantRoute: "default", wantCode: codes.Unauthenticated, wantHTTP: 401, reason: "missing_token", wantChal: `Bearer realm="jwtauthz"`},
		{name: "scope in scope", req: routed("GET", "api.example.com", "/api/orders", bearerOf(alice), nil), wantRoute: "orders-read", wantCode: codes.OK, wantUser: "alice"},
		{name: "scope missing", req: routed("POST", "api.example.com", "/api/orders", bearerOf(alice), nil), wantRoute: "orders-write", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "insufficient_scope", wantChal: `error="insufficient_scope", scope="orders:write"`},
		{name: "scope in scp list", req: routed("POST", "api.example.com", "/api/orders/7", bearerOf(writer), nil), wantRoute: "orders-write", wantCode: codes.OK, wantUser: "wendy"},
		{name: "scope in scp string", req: routed("DELETE", "api.example.com", "/api/orders/7", bearerOf(entra), nil), wantRoute: "orders-write", wantCode: codes.OK, wantUser: "eve"},
		{name: "claim in a nested list", req: routed("GET", "api.example.com", "/admin/users", bearerOf(admin), nil), wantRoute: "admin", wantCode: codes.OK, wantUser: "root"},
		{name: "claim missing", req: routed("GET", "api.example.com", "/admin", bearerOf(alice), nil), wantRoute: "admin", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "forbidden", wantChal: "-"},
		{name: "a flat dotted claim never stands in for the nested one", req: routed("GET", "api.example.com", "/admin", bearerOf(flatAdmin), nil), wantRoute: "admin", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "forbidden", wantChal: "-"},
		{name: "provider allowed", req: routed("GET", "partner.example.com:443", "/x", bearerOf(partner), nil), wantRoute: "partner-api", wantCode: codes.OK, wantUser: "pat"},
		{name: "provider refused", req: routed("GET", "partner.example.com", "/x", bearerOf(alice), nil), wantRoute: "partner-api", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "forbidden"},
		{name: "context extension picks the rule", req: routed("GET", "api.example.com", "/pay", bearerOf(gold), map[string]string{"route": "billing"}), wantRoute: "billing", wantCode: codes.OK, wantUser: "goldie"},
		{name: "context extension rule refuses", req: routed("GET", "api.example.com", "/pay", bearerOf(alice), map[string]string{"route": "billing"}), wantRoute: "billing", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "forbidden"},
		{name: "regex route", req: routed("GET", "api.example.com", "/v2/reports", bearerOf(alice), nil), wantRoute: "reports", wantCode: codes.OK, wantUser: "alice"},
		{name: "first match wins over a later broader route", req: routed("HEAD", "api.example.com", "/api/orders/1", bearerOf(alice), nil), wantRoute: "orders-read", wantCode: codes.OK, wantUser: "alice"},
		{name: "default route", req: routed("GET", "api.example.com", "/anything", bearerOf(alice), nil), wantRoute: "default", wantCode: codes.OK, wantUser: "alice"},

		{name: "bad path: dot-dot under a public prefix", req: routed("GET", "api.example.com", "/public/../admin", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path", wantChal: "-"},
		{name: "bad path: encoded dots", req: routed("GET", "api.example.com", "/public/%2e%2e/admin", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "bad path: encoded slash", req: routed("GET", "api.example.com", "/public%2F..%2Fadmin", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "bad path: encoded backslash", req: routed("GET", "api.example.com", "/public%5C..%5Cadmin", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "bad path: empty segment", req: routed("GET", "api.example.com", "/public//x", nil, nil), wantRoute: "public", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "bad path: dot segment", req: routed("GET", "api.example.com", "/public/./x", nil, nil), wantRoute: "public", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "bad path: encoded unreserved character", req: routed("GET", "api.example.com", "/adm%69n", bearerOf(alice), nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "the query is not part of the path", req: routed("GET", "api.example.com", "/healthz?x=/../admin", nil, nil), wantRoute: "health", wantCode: codes.OK},

		{name: "dry run: 401 allowed anonymous", req: routed("GET", "api.example.com", "/beta/x", nil, nil), wantRoute: "beta", wantCode: codes.OK, reason: "missing_token"},
		{name: "dry run: invalid token allowed anonymous", req: routed("GET", "api.example.com", "/beta/x", bearerOf(expired), nil), wantRoute: "beta", wantCode: codes.OK, reason: "expired"},
		{name: "dry run: 403 allowed with identity", req: routed("GET", "api.example.com", "/beta/x", bearerOf(alice), nil), wantRoute: "beta", wantCode: codes.OK, reason: "insufficient_scope", wantUser: "alice"},
		{name: "dry run: 400 allowed", req: routed("GET", "api.example.com", "/beta/./x", bearerOf(alice), nil), wantRoute: "beta", wantCode: codes.OK, reason: "bad_path"},
		{name: "dry run never covers a path that resolves elsewhere", req: routed("GET", "api.example.com", "/beta/../admin", bearerOf(alice), nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "dry run never covers a path that a server reading it as sent puts elsewhere", req: routed("GET", "api.example.com", "/admin/..%2Fbeta", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "dry run never covers a path with a dot segment that decodes elsewhere", req: routed("GET", "api.example.com", "/admin/x/..%2F..%2Fbeta", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "dry run never covers a path resolved before a fragment", req: routed("GET", "api.example.com", "/beta/../admin#/../../beta", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "dry run never covers an encoding no reading decodes", req: routed("GET", "api.example.com", "/beta/%u002e%u002e/admin", nil, nil), wantRoute: "beta", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},

		{name: "a host with a trailing dot is the same host", req: routed("GET", "partner.example.com.", "/x", bearerOf(alice), nil), wantRoute: "partner-api", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "forbidden"},
		{name: "a host with a trailing dot and a port", req: routed("GET", "partner.example.com.:443", "/x", bearerOf(alice), nil), wantRoute: "partner-api", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "forbidden"},
		{name: "a lowercase method that every reading puts under one rule is judged by it", req: routed("delete", "api.example.com", "/api/orders/7", bearerOf(alice), nil), wantRoute: "orders-write", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "insufficient_scope"},
		{name: "a lowercase get that GET would route elsewhere is refused", req: routed("get", "api.example.com", "/api/orders/7", bearerOf(alice), nil), wantRoute: "orders-read", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_method", wantChal: "-"},
		{name: "a lowercase patch on a public path", req: routed("patch", "api.example.com", "/public/x", nil, nil), wantRoute: "public", wantCode: codes.OK},
		{name: "matrix parameters that change no rule", req: routed("GET", "api.example.com", "/public/a;v=1", nil, nil), wantRoute: "public", wantCode: codes.OK},
		{name: "a character encoded twice", req: routed("GET", "api.example.com", "/public/%252e%252e/admin", nil, nil), wantRoute: "public", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "a scope split by a tab is one scope", req: routed("POST", "api.example.com", "/api/orders", bearerOf(tabbed), nil), wantRoute: "orders-write", wantCode: codes.PermissionDenied, wantHTTP: 403, reason: "insufficient_scope"},
		{name: "path parameters never hide a prefix", req: routed("GET", "api.example.com", "/admin;jsessionid=x", bearerOf(alice), nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "a dot-dot with path parameters is a dot-dot", req: routed("GET", "api.example.com", "/public/..;/admin", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "an encoded semicolon after a dot-dot", req: routed("GET", "api.example.com", "/public/..%3B/admin", nil, nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
		{name: "a fragment is never part of a request path", req: routed("GET", "api.example.com", "/admin#x", bearerOf(alice), nil), wantRoute: "admin", wantCode: codes.InvalidArgument, wantHTTP: 400, reason: "bad_path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.check(t, tt.req)
			if got := codes.Code(resp.GetStatus().GetCode()); got != tt.wantCode {
				t.Fatalf("status = %v (%s), want %v", got, resp.GetDeniedResponse().GetBody(), tt.wantCode)
			}
			if tt.wantCode != codes.OK {
				if got := resp.GetDynamicMetadata().GetFields()["route"].GetStringValue(); got != tt.wantRoute {
					t.Errorf("denial's dynamic metadata route = %q, want %q", got, tt.wantRoute)
				}
				d := resp.GetDeniedResponse()
				if int(d.GetStatus().GetCode()) != tt.wantHTTP || !strings.Contains(d.GetBody(), `"error":"`+tt.reason+`"`) {
					t.Errorf("denied %d %s, want %d %s", d.GetStatus().GetCode(), d.GetBody(), tt.wantHTTP, tt.reason)
				}
				chal := headerMap(d.GetHeaders())["www-authenticate"]
				switch {
				case tt.wantChal == "-" && chal != "":
					t.Errorf("www-authenticate = %q, want none", chal)
				case tt.wantChal != "-" && !strings.Contains(chal, tt.wantChal):
					t.Errorf("www-authenticate = %q, want it to contain %q", chal, tt.wantChal)
				}
				return
			}
			fields := resp.GetDynamicMetadata().GetFields()
			if got := fields["route"].GetStringValue(); got != tt.wantRoute {
				t.Errorf("dynamic metadata route = %q, want %q", got, tt.wantRoute)
			}
			if got := fields["dry_run_deny"].GetStringValue(); got != tt.reason {
				t.Errorf("dynamic metadata dry_run_deny = %q, want %q", got, tt.reason)
			}
			set := headerMap(resp.GetOkResponse().GetHeaders())
			if got := set["x-auth-user"]; got != tt.wantUser {
				t.Errorf("x-auth-user = %q, want %q", got, tt.wantUser)
			}
			if anon := fields["anonymous"].GetBoolValue(); anon != (tt.wantUser == "") {
				t.Errorf("dynamic metadata anonymous = %v, want %v", anon, tt.wantUser == "")
			}
			if tt.req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-auth-user"] != "" && tt.wantUser == "" {
				if r := resp.GetOkResponse().GetHeadersToRemove(); !strings.Contains(strings.Join(r, ","), "x-auth-user") {
					t.Errorf("anonymous answer keeps the client's x-auth-user: headers_to_remove = %q", r)
				}
			}
		})
	}

	// The route label, and dry-run denials counted apart from allows.
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"none", "health", "allow", "ok"}, 2},
		{[]string{"default", "orders-write", "deny", "insufficient_scope"}, 3},
		{[]string{"none", "orders-read", "deny", "bad_method"}, 1},
		{[]string{"default", "beta", "dry_run_deny", "insufficient_scope"}, 1},
		{[]string{"none", "beta", "dry_run_deny", "missing_token"}, 1},
		{[]string{"none", "admin", "deny", "bad_path"}, 13}, // the 400s that some server reads under /admin
		{[]string{"partner", "partner-api", "allow", "ok"}, 1},
	} {
		got := counter(t, f.reg, "jwtauthz_checks_total", "provider", c.labels[0], "route", c.labels[1], "decision", c.labels[2], "reason", c.labels[3])
		if got != c.want {
			t.Errorf("jwtauthz_checks_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
}

// counter returns the value of the counter name with the label pairs kv,
// gathered from reg; 0 when there is none.
func counter(t *testing.T, reg *prometheus.Registry, name string, kv ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(kv); i += 2 {
				if labels[kv[i]] != kv[i+1] {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
