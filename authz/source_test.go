package authz_test

import (
	"net/url"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/route"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

// requestAt is request with another path (and query).
func requestAt(path string, headers map[string]string) *authv3.CheckRequest {
	req := request(headers)
	req.GetAttributes().GetRequest().GetHttp().Path = path
	req.GetAttributes().GetRequest().GetHttp().GetHeaders()[":path"] = path
	return req
}

func TestTokenSources(t *testing.T) {
	key := rsaKey(t)
	verifier := singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey))
	tok := mint(t, jwt.SigningMethodRS256, key, claimsFor("alice"), nil)
	other := mint(t, jwt.SigningMethodRS256, key, claimsFor("bob"), nil)
	sources := []authz.TokenSource{
		{Header: "x-jwt-assertion"},
		{Header: "authorization", Prefix: "Bearer "},
		{Cookie: "access_token"},
		{Query: "access_token"},
	}
	f := start(t, fixtureOptions{verifier: verifier, tokenSources: sources})

	tests := []struct {
		name       string
		path       string
		headers    map[string]string
		wantUser   string // "" for a denial
		wantReason string
		wantQuery  []string // query_parameters_to_remove
	}{
		{name: "custom header, no prefix", headers: map[string]string{"x-jwt-assertion": tok}, wantUser: "alice"},
		{name: "bearer header", headers: bearer(tok), wantUser: "alice"},
		{name: "cookie", headers: map[string]string{"cookie": "theme=dark; access_token=" + tok + "; lang=en"}, wantUser: "alice"},
		{name: "quoted cookie", headers: map[string]string{"cookie": `access_token="` + tok + `"`}, wantUser: "alice"},
		{name: "query", path: "/api?x=1&access_token=" + url.QueryEscape(tok) + "&y=2", wantUser: "alice", wantQuery: []string{"access_token"}},
		{name: "first present wins: header over cookie", headers: map[string]string{"x-jwt-assertion": tok, "cookie": "access_token=" + other}, wantUser: "alice"},
		{name: "first present wins: cookie over query", path: "/api?access_token=" + tok, headers: map[string]string{"cookie": "access_token=" + other}, wantUser: "bob", wantQuery: []string{"access_token"}},
		{name: "a basic credential is not a token of the bearer source", headers: map[string]string{"authorization": "Basic dTpw", "cookie": "access_token=" + tok}, wantUser: "alice"},
		{name: "none present", path: "/api?other=1", headers: map[string]string{"cookie": "theme=dark"}, wantReason: "missing_token"},
		{name: "malformed first source never falls back", headers: map[string]string{"x-jwt-assertion": "not a token", "authorization": "Bearer " + tok}, wantReason: "malformed"},
		{name: "cookie twice with different values", headers: map[string]string{"cookie": "access_token=" + tok + "; access_token=" + other}, wantReason: "malformed"},
		{name: "query twice", path: "/api?access_token=" + tok + "&access_token=" + tok, wantReason: "malformed"},
		{name: "newline in a header token", headers: map[string]string{"x-jwt-assertion": tok[:10] + "\n" + tok[10:]}, wantReason: "malformed"},
		{name: "bad signature in the query", path: "/api?access_token=" + tok[:len(tok)-4] + "AAAA", wantReason: "invalid_signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/api"
			}
			resp := f.check(t, requestAt(path, tt.headers))
			if tt.wantUser == "" {
				if got := resp.GetStatus().GetCode(); got != int32(codes.Unauthenticated) {
					t.Fatalf("status = %v, want UNAUTHENTICATED", codes.Code(got))
				}
				if body := resp.GetDeniedResponse().GetBody(); !strings.Contains(body, `"error":"`+tt.wantReason+`"`) {
					t.Errorf("body = %s, want reason %s", body, tt.wantReason)
				}
				if strings.Contains(resp.GetDeniedResponse().GetBody(), tok[20:40]) {
					t.Errorf("the deny body echoes the token: %s", resp.GetDeniedResponse().GetBody())
				}
				return
			}
			assertAllowedAs(t, resp, tt.wantUser, tt.wantQuery)
		})
	}
}

func TestDefaultTokenSourceIsTheBearerHeaderAlone(t *testing.T) {
	key := rsaKey(t)
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey))})
	tok := mint(t, jwt.SigningMethodRS256, key, claimsFor("alice"), nil)
	for name, req := range map[string]*authv3.CheckRequest{
		"cookie": requestAt("/api", map[string]string{"cookie": "access_token=" + tok}),
		"query":  requestAt("/api?access_token="+tok, nil),
		"header": requestAt("/api", map[string]string{"x-jwt-assertion": tok}),
	} {
		if resp := f.check(t, req); !strings.Contains(resp.GetDeniedResponse().GetBody(), "missing_token") {
			t.Errorf("token in the %s with the default sources: %s, want missing_token", name, resp.GetDeniedResponse().GetBody())
		}
	}
	if resp := f.check(t, request(bearer(tok))); resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Errorf("bearer header: %v, want allowed", resp.GetStatus())
	}
}

// TestQueryTokenNeverReachesTheUpstream: every allow removes the query
// parameters a query source reads, as the request spells them: with an
// encoded name, on a route that reads no token, and in a dry run whose
// token could not be read.
func TestQueryTokenNeverReachesTheUpstream(t *testing.T) {
	key := rsaKey(t)
	verifier := singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey))
	tok := mint(t, jwt.SigningMethodRS256, key, claimsFor("alice"), nil)
	table, err := route.Compile([]route.Spec{
		{Rule: route.Rule{Name: "public", Auth: route.None}, Match: route.Match{PathPrefixes: []string{"/public"}}},
		{Rule: route.Rule{Name: "beta", DryRun: true}, Match: route.Match{PathPrefixes: []string{"/beta"}}},
	}, route.Rule{})
	if err != nil {
		t.Fatal(err)
	}
	f := start(t, fixtureOptions{verifier: verifier, routes: table, tokenSources: []authz.TokenSource{{Query: "access_token"}}})
	tests := []struct {
		name, path string
		wantUser   string
		wantQuery  []string
	}{
		{"plain name", "/api?access_token=" + tok, "alice", []string{"access_token"}},
		{"encoded name", "/api?access%5Ftoken=" + tok, "alice", []string{"access_token", "access%5Ftoken"}},
		{"auth none still strips it", "/public/x?access_token=" + tok, "", []string{"access_token"}},
		{"dry run with the parameter twice", "/beta?access_token=a&access_token=" + tok, "", []string{"access_token"}},
		{"dry run with both spellings", "/beta?access_token=a&access%5ftoken=b", "", []string{"access_token", "access%5ftoken"}},
		{"no parameter, nothing to remove", "/public/x?y=1", "", nil},
		{"after a '#' in the query, which Go's net/url still reads", "/public/x?y=1#&access_token=" + tok, "", []string{"access_token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.check(t, requestAt(tt.path, nil))
			assertAllowedAs(t, resp, tt.wantUser, tt.wantQuery)
		})
	}
}

// assertAllowedAs fails t unless resp allows as user ("" for anonymous) and
// removes exactly the query parameters query.
func assertAllowedAs(t *testing.T, resp *authv3.CheckResponse, user string, query []string) {
	t.Helper()
	if got := resp.GetStatus().GetCode(); got != int32(codes.OK) {
		t.Fatalf("status = %v (%s), want OK", codes.Code(got), resp.GetDeniedResponse().GetBody())
	}
	if got := headerMap(resp.GetOkResponse().GetHeaders())["x-auth-user"]; got != user {
		t.Errorf("x-auth-user = %q, want %q", got, user)
	}
	if got := resp.GetOkResponse().GetQueryParametersToRemove(); strings.Join(got, ",") != strings.Join(query, ",") {
		t.Errorf("query_parameters_to_remove = %q, want %q", got, query)
	}
}
