package authz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

func overwrite(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		Append:       wrapperspb.Bool(false),
	}
}

func TestCheckAllowsRS512WithIdentityHeaders(t *testing.T) {
	key := rs512Key(t)
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{}, staticKeys(&key.PublicKey))})
	tok := mint(t, jwt.SigningMethodRS512, key, claimsFor("alice"), nil)

	got := f.check(t, request(bearer(tok)))
	want := &authv3.CheckResponse{
		Status: statusOK(),
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{
				overwrite("x-auth-user", "alice"),
				overwrite("x-auth-user-id", "1"),
				overwrite("x-auth-provider", "default"),
			},
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			"user":     structpb.NewStringValue("alice"),
			"user_id":  structpb.NewStringValue("1"),
			"provider": structpb.NewStringValue("default"),
			"new_user": structpb.NewBoolValue(true),
			"route":    structpb.NewStringValue("default"),
		}},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("Check response mismatch (-want +got):\n%s", diff)
	}

	// The user was stored durably with the token's subject.
	u, err := f.db.User(context.Background(), "default", "alice")
	if err != nil {
		t.Fatalf("stored user: %v", err)
	}
	if u.GetId() != 1 || u.GetSubject() != "sub-alice" || !u.GetActive() || u.GetLoginCount() != 1 {
		t.Errorf("stored user = %v, want id 1, subject sub-alice, active, 1 login", u)
	}

	// A second Check is the same user, no longer new.
	got = f.check(t, request(bearer(tok)))
	if nu := got.GetDynamicMetadata().GetFields()["new_user"].GetBoolValue(); nu {
		t.Errorf("second Check: new_user = true, want false")
	}
}

func TestCheckDenies(t *testing.T) {
	key := rsaKey(t)
	other := rsaKey(t)
	src := staticKeys(&key.PublicKey)
	verifier := singleProvider(t, token.Options{
		Algorithms: []string{"RS256"},
		Issuer:     "https://idp.example.com",
		Audiences:  []string{"api"},
		Leeway:     30 * time.Second,
	}, src)
	f := start(t, fixtureOptions{verifier: verifier})

	valid := func() jwt.MapClaims {
		c := claimsFor("bob")
		c["iss"] = "https://idp.example.com"
		c["aud"] = "api"
		return c
	}
	with := func(k string, v any) jwt.MapClaims {
		c := valid()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	good := mint(t, jwt.SigningMethodRS256, key, valid(), nil)
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	pubPEM := publicPEM(t, &key.PublicKey)

	tests := []struct {
		name       string
		headers    map[string]string
		reason     authz.Reason
		tokenGiven bool
	}{
		{"expired", bearer(mint(t, jwt.SigningMethodRS256, key, with("exp", now.Add(-time.Minute).Unix()), nil)), authz.ReasonExpired, true},
		{"expired within leeway is fine, past it is not", bearer(mint(t, jwt.SigningMethodRS256, key, with("exp", now.Add(-31*time.Second).Unix()), nil)), authz.ReasonExpired, true},
		{"not yet valid", bearer(mint(t, jwt.SigningMethodRS256, key, with("nbf", now.Add(time.Hour).Unix()), nil)), authz.ReasonNotYetValid, true},
		{"issued in the future", bearer(mint(t, jwt.SigningMethodRS256, key, with("iat", now.Add(time.Hour).Unix()), nil)), authz.ReasonNotYetValid, true},
		{"bad signature", bearer(parts[0] + "." + parts[1] + "." + b64([]byte(strings.Repeat("x", 256)))), authz.ReasonInvalidSignature, true},
		{"tampered payload", bearer(parts[0] + "." + b64([]byte(`{"username":"root","exp":9999999999,"iss":"https://idp.example.com","aud":"api"}`)) + "." + parts[2]), authz.ReasonInvalidSignature, true},
		{"another key", bearer(mint(t, jwt.SigningMethodRS256, other, valid(), nil)), authz.ReasonInvalidSignature, true},
		{"alg none", bearer(mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid(), nil)), authz.ReasonAlgorithm, true},
		{"alg None spelled otherwise", bearer(b64([]byte(`{"alg":"None","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2]), authz.ReasonAlgorithm, true},
		{"HS256 signed with the public key PEM", bearer(mint(t, jwt.SigningMethodHS256, pubPEM, valid(), nil)), authz.ReasonAlgorithm, true},
		{"algorithm outside the allowlist", bearer(mint(t, jwt.SigningMethodRS512, key, valid(), nil)), authz.ReasonAlgorithm, true},
		{"wrong iss", bearer(mint(t, jwt.SigningMethodRS256, key, with("iss", "https://evil.example.com"), nil)), authz.ReasonIssuer, true},
		{"no iss", bearer(mint(t, jwt.SigningMethodRS256, key, with("iss", nil), nil)), authz.ReasonIssuer, true},
		{"wrong aud", bearer(mint(t, jwt.SigningMethodRS256, key, with("aud", "other"), nil)), authz.ReasonAudience, true},
		{"aud array without ours", bearer(mint(t, jwt.SigningMethodRS256, key, with("aud", []string{"a", "b"}), nil)), authz.ReasonAudience, true},
		{"no exp", bearer(mint(t, jwt.SigningMethodRS256, key, with("exp", nil), nil)), authz.ReasonMalformed, true},
		{"exp as string", bearer(mint(t, jwt.SigningMethodRS256, key, with("exp", "9999999999"), nil)), authz.ReasonMalformed, true},
		{"schema: username not a string", bearer(mint(t, jwt.SigningMethodRS256, key, with("username", 42), nil)), authz.ReasonClaimsSchema, true},
		{"schema: username missing", bearer(mint(t, jwt.SigningMethodRS256, key, with("username", nil), nil)), authz.ReasonClaimsSchema, true},
		{"schema: exp not an integer", bearer(mint(t, jwt.SigningMethodRS256, key, with("exp", float64(now.Add(time.Hour).Unix())+0.5), nil)), authz.ReasonClaimsSchema, true},
		{"username with NUL", bearer(mint(t, jwt.SigningMethodRS256, key, with("username", "bo\x00b"), nil)), authz.ReasonClaimsSchema, true},
		{"username with a newline", bearer(mint(t, jwt.SigningMethodRS256, key, with("username", "bob\r\nx-auth-user: root"), nil)), authz.ReasonClaimsSchema, true},
		{"username over 256 bytes", bearer(mint(t, jwt.SigningMethodRS256, key, with("username", strings.Repeat("b", 257)), nil)), authz.ReasonClaimsSchema, true},
		{"crit header", bearer(mint(t, jwt.SigningMethodRS256, key, valid(), map[string]any{"crit": []string{"exp"}})), authz.ReasonMalformed, true},
		{"no token", nil, authz.ReasonMissingToken, false},
		{"non-Bearer scheme", map[string]string{"authorization": "Basic YWxpY2U6c2VjcmV0"}, authz.ReasonMissingToken, false},
		{"Bearer without a token", map[string]string{"authorization": "Bearer "}, authz.ReasonMalformed, true},
		{"two tokens", map[string]string{"authorization": "Bearer " + good + ", Bearer " + good}, authz.ReasonMalformed, true},
		{"oversized token", bearer(parts[0] + "." + b64([]byte(`{"pad":"`+strings.Repeat("a", 9000)+`"}`)) + "." + parts[2]), authz.ReasonMalformed, true},
		{"malformed base64", bearer(parts[0] + ".!!!notbase64!!!." + parts[2]), authz.ReasonMalformed, true},
		{"padded base64", bearer(parts[0] + "." + base64.URLEncoding.EncodeToString([]byte(`{"username":"bob","exp":9999999999}`)) + "." + parts[2]), authz.ReasonMalformed, true},
		{"malformed JSON", bearer(parts[0] + "." + b64([]byte(`{"username":`)) + "." + parts[2]), authz.ReasonMalformed, true},
		{"two segments", bearer(parts[0] + "." + parts[1]), authz.ReasonMalformed, true},
		{"kid unknown to a set without kids still tries kid-less keys: wrong key", bearer(mint(t, jwt.SigningMethodRS256, other, valid(), map[string]any{"kid": "k9"})), authz.ReasonInvalidSignature, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.check(t, request(tc.headers))
			assertDenied(t, resp, tc.reason, tc.tokenGiven)
			if tc.tokenGiven {
				if tok := strings.TrimPrefix(tc.headers["authorization"], "Bearer "); len(tok) > 20 && strings.Contains(resp.GetDeniedResponse().GetBody(), tok) {
					t.Errorf("body echoes the token")
				}
			}
		})
	}
}

// assertDenied checks a deny response against the deny table
// (errors.go; README.md "What Envoy gets back").
func assertDenied(t *testing.T, resp *authv3.CheckResponse, reason authz.Reason, tokenGiven bool) {
	t.Helper()
	wantCode, wantHTTP := codes.Unauthenticated, 401
	switch reason {
	case authz.ReasonUserInactive:
		wantCode, wantHTTP = codes.PermissionDenied, 403
	case authz.ReasonKeysUnavailable, authz.ReasonStoreUnavailable:
		wantCode, wantHTTP = codes.Unavailable, 503
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != wantCode {
		t.Fatalf("status = %v (%s), want %v", got, resp.GetStatus().GetMessage(), wantCode)
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("no denied_response in %v", resp)
	}
	if got := int(d.GetStatus().GetCode()); got != wantHTTP {
		t.Errorf("HTTP status = %d, want %d", got, wantHTTP)
	}
	h := headerMap(d.GetHeaders())
	if h["content-type"] != "application/json" {
		t.Errorf("content-type = %q, want application/json", h["content-type"])
	}
	var body struct{ Error, Detail string }
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", d.GetBody(), err)
	}
	if body.Error != string(reason) || body.Detail == "" {
		t.Errorf("body = %+v, want error %q and a detail", body, reason)
	}
	if reason == authz.ReasonClaimsSchema && !strings.HasPrefix(body.Detail, "Invalid JWT schema:") {
		t.Errorf("detail = %q, want it to start with %q", body.Detail, "Invalid JWT schema:")
	}
	wa := h["www-authenticate"]
	switch {
	case wantHTTP == 503:
		if h["retry-after"] == "" {
			t.Errorf("503 without retry-after: %v", h)
		}
	case tokenGiven:
		if !strings.HasPrefix(wa, `Bearer realm="jwtauthz", error="invalid_token", error_description="`) {
			t.Errorf("www-authenticate = %q, want Bearer realm with error=\"invalid_token\"", wa)
		}
	default:
		if wa != `Bearer realm="jwtauthz"` {
			t.Errorf("www-authenticate = %q, want %q", wa, `Bearer realm="jwtauthz"`)
		}
	}
}

func TestCheckHeadersAntiSpoofing(t *testing.T) {
	key := rsaKey(t)
	verifier := singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey))
	h := identityHeaders()
	h.Payload = "x-jwt-payload"
	f := start(t, fixtureOptions{
		verifier: verifier,
		headers:  &h,
		claimHeaders: map[string][]authz.ClaimHeader{"default": {
			{Header: "x-auth-email", Claim: "email"},
			{Header: "x-roles", Claim: "realm_access.roles"},
			{Header: "x-org", Claim: "org"},
		}},
		noForward: true,
	})
	c := claimsFor("carol")
	c["realm_access"] = map[string]any{"roles": []string{"admin", "dev"}}
	c["org"] = map[string]any{"id": 7, "name": "acme"}
	tok := mint(t, jwt.SigningMethodRS256, key, c, nil)

	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"headers", request(map[string]string{
			"authorization":  "Bearer " + tok,
			"x-auth-user":    "root",      // spoofed, overwritten
			"x-auth-email":   "root@evil", // claim absent: removed
			"x-auth-anybody": "x",         // prefix: removed
			"x-jwt-payload":  "e30",       // identity header outside the prefix: overwritten
			"x-other":        "kept",      // not ours: untouched
		})},
		{"header_map", requestHeaderMap([][2]string{
			{"authorization", "Bearer " + tok},
			{"x-auth-user", "root"},
			{"x-auth-email", "root@evil"},
			{"x-auth-anybody", "x"},
			{"x-jwt-payload", "e30"},
			{"x-other", "kept"},
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := f.check(t, tc.req)
			ok := resp.GetOkResponse()
			if codes.Code(resp.GetStatus().GetCode()) != codes.OK || ok == nil {
				t.Fatalf("want allow, got %v", resp)
			}
			got := headerMap(ok.GetHeaders())
			payload := strings.Split(tok, ".")[1]
			want := map[string]string{
				"x-auth-user": "carol", "x-auth-user-id": "1", "x-auth-provider": "default",
				"x-jwt-payload": payload, "x-roles": "admin,dev", "x-org": `{"id":7,"name":"acme"}`,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("headers to set (-want +got):\n%s", diff)
			}
			for _, h := range ok.GetHeaders() {
				if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend() == nil || h.GetAppend().GetValue() {
					t.Errorf("header %s: append_action %v, append %v; want OVERWRITE_IF_EXISTS_OR_ADD and append false", h.GetHeader().GetKey(), h.GetAppendAction(), h.GetAppend())
				}
			}
			removed := map[string]bool{}
			for _, r := range ok.GetHeadersToRemove() {
				removed[r] = true
			}
			wantRemoved := map[string]bool{"x-auth-email": true, "x-auth-anybody": true, "authorization": true}
			if diff := cmp.Diff(wantRemoved, removed); diff != "" {
				t.Errorf("headers_to_remove (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckConcurrentFirstRequestsCreateOneUser(t *testing.T) {
	key := rsaKey(t)
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey))})
	tok := mint(t, jwt.SigningMethodRS256, key, claimsFor("dave"), nil)

	const n = 100
	var wg sync.WaitGroup
	ids := make([]string, n)
	news := make([]bool, n)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := f.client.Check(context.Background(), request(bearer(tok)))
			if err != nil {
				errs <- err
				return
			}
			md := resp.GetDynamicMetadata().GetFields()
			ids[i] = md["user_id"].GetStringValue()
			news[i] = md["new_user"].GetBoolValue()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	created := 0
	for i := range n {
		if ids[i] != "1" {
			t.Errorf("request %d: user_id %q, want 1", i, ids[i])
		}
		if news[i] {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d responses say new_user, want exactly 1", created)
	}
	users, err := f.db.List(context.Background(), "", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 {
		t.Errorf("store holds %d users, want 1", len(users))
	}
}

func TestCheckUserKeepsIDAcrossRestartAndLastLoginAdvances(t *testing.T) {
	key := rsaKey(t)
	verifier := singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey))
	path := t.TempDir() + "/users.db"

	f := start(t, fixtureOptions{verifier: verifier, dbPath: path})
	for _, u := range []string{"erin", "frank"} {
		f.check(t, request(bearer(mint(t, jwt.SigningMethodRS256, key, claimsFor(u), nil))))
	}
	first, err := f.db.User(context.Background(), "default", "frank")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}

	f = start(t, fixtureOptions{verifier: verifier, dbPath: path})
	resp := f.check(t, request(bearer(mint(t, jwt.SigningMethodRS256, key, claimsFor("frank"), nil))))
	md := resp.GetDynamicMetadata().GetFields()
	if md["user_id"].GetStringValue() != "2" || md["new_user"].GetBoolValue() {
		t.Errorf("after restart: user_id %q new_user %v, want 2 and false", md["user_id"].GetStringValue(), md["new_user"].GetBoolValue())
	}
	if err := f.db.Flush(); err != nil {
		t.Fatal(err)
	}
	u, err := f.db.User(context.Background(), "default", "frank")
	if err != nil {
		t.Fatal(err)
	}
	if u.GetLoginCount() != first.GetLoginCount()+1 {
		t.Errorf("login_count = %d, want %d", u.GetLoginCount(), first.GetLoginCount()+1)
	}
	if !u.GetLastLogin().AsTime().Equal(now) || !u.GetCreatedAt().AsTime().Equal(first.GetCreatedAt().AsTime()) {
		t.Errorf("last_login %v created_at %v; want last_login %v and created_at unchanged", u.GetLastLogin().AsTime(), u.GetCreatedAt().AsTime(), now)
	}
}
