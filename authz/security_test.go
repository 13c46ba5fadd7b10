package authz_test

import (
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

// The second attack round's findings, each over real gRPC with a real
// bbolt store. Each test fails on the code before its fix.

// TestUnderscoreHeadersStripped: WSGI servers (Django, Flask, gunicorn)
// read x_auth_user and x-auth-user as one HTTP_X_AUTH_USER, so an
// underscore spelling of a protected header must be removed too.
func TestUnderscoreHeadersStripped(t *testing.T) {
	key := rsaKey(t)
	f := start(t, fixtureOptions{
		verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey)),
		claimHeaders: map[string][]authz.ClaimHeader{"default": {
			{Header: "x-tenant", Claim: "tenant"},
			{Header: "x-roles", Claim: "realm_access.roles"},
		}},
	})
	c := claimsFor("alice")
	c["tenant"] = "acme"
	tok := mint(t, jwt.SigningMethodRS256, key, c, nil)
	resp := f.check(t, request(map[string]string{
		"authorization": "Bearer " + tok,
		"x_roles":       "ops,admin",
		"x_tenant":      "evil-corp",
		"x_auth_user":   "admin",
		"X_Auth_Anyone": "x",
		"x_other":       "kept",
	}))
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("status %v, want OK", resp.GetStatus())
	}
	removed := resp.GetOkResponse().GetHeadersToRemove()
	for _, h := range []string{"x_roles", "x_tenant", "x_auth_user", "x_auth_anyone"} {
		if !slices.Contains(removed, h) {
			t.Errorf("headers_to_remove = %q, want it to hold %q", removed, h)
		}
	}
	if slices.Contains(removed, "x_other") {
		t.Errorf("headers_to_remove = %q removes a header that is not ours", removed)
	}
}

// TestUsernameMustBeNormal: a username with surrounding white space, that
// is not UTF-8, or not in NFC would make a second user whom the upstream
// sees as the first (HTTP trims header values); it is a claims failure.
func TestUsernameMustBeNormal(t *testing.T) {
	key := rsaKey(t)
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey))})
	for name, user := range map[string]string{
		"trailing space": "alice ",
		"leading tab":    `\talice`, // a JSON escape in the raw payload
		"no-break space": "alice\u00a0",
		"not NFC":        "Ame\u0301lie", // e + combining acute; NFC is U+00E9
		// Written into the payload as raw bytes: encoding/json would read
		// both as "al\ufffdice", one user for two names.
		"invalid UTF-8":      "al\xffice",
		"other invalid byte": "al\xfeice",
	} {
		t.Run(name, func(t *testing.T) {
			payload := fmt.Sprintf(`{"username":"%s","exp":%d}`, user, now.Add(time.Hour).Unix())
			resp := f.check(t, request(bearer(signRaw(t, key, `{"alg":"RS256","typ":"JWT"}`, payload))))
			if body := resp.GetDeniedResponse().GetBody(); !strings.Contains(body, `"error":"claims_schema"`) {
				t.Errorf("username %q: %v %s, want claims_schema", user, resp.GetStatus(), body)
			}
		})
	}
	c := claimsFor("x")
	c["username"] = "Am\u00e9lie"
	if resp := f.check(t, request(bearer(mint(t, jwt.SigningMethodRS256, key, c, nil)))); resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Errorf("NFC username: %v, want allowed", resp.GetStatus())
	}
}

// signRaw signs header and payload, taken as the bytes given (not
// re-encoded as JSON), with RS256.
func signRaw(t *testing.T, key *rsa.PrivateKey, header, payload string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(header)) + "." + enc([]byte(payload))
	sig, err := jwt.SigningMethodRS256.Sign(signing, key)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + enc(sig)
}

// TestTrailingJSONRefused: a payload of two JSON texts verified, and the
// payload header forwarded both; an upstream that parses it could read the
// second. Trailing data after the header or payload is malformed.
func TestTrailingJSONRefused(t *testing.T) {
	key := rsaKey(t)
	h := identityHeaders()
	h.Payload = "x-jwt-payload"
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey)), headers: &h})
	exp := now.Add(time.Hour).Unix()
	for name, tok := range map[string]string{
		"second payload":  signRaw(t, key, `{"alg":"RS256"}`, fmt.Sprintf(`{"username":"alice","exp":%d} {"username":"admin"}`, exp)),
		"trailing number": signRaw(t, key, `{"alg":"RS256"}`, fmt.Sprintf(`{"username":"alice","exp":%d}1`, exp)),
		"second header":   signRaw(t, key, `{"alg":"RS256"}{"alg":"none"}`, fmt.Sprintf(`{"username":"alice","exp":%d}`, exp)),
	} {
		t.Run(name, func(t *testing.T) {
			resp := f.check(t, request(bearer(tok)))
			if body := resp.GetDeniedResponse().GetBody(); !strings.Contains(body, `"error":"malformed"`) {
				t.Errorf("%v %s, want malformed", resp.GetStatus(), body)
			}
		})
	}
	// White space after the JSON text is not data.
	ok := signRaw(t, key, `{"alg":"RS256"} `, fmt.Sprintf("{\"username\":\"alice\",\"exp\":%d}\n", exp))
	if resp := f.check(t, request(bearer(ok))); resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Errorf("trailing white space: %v %s, want allowed", resp.GetStatus(), resp.GetDeniedResponse().GetBody())
	}
}
