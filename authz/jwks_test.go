package authz_test

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

// jwksServer is a real HTTP JWK Set endpoint whose answer a test can change.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
}

func jwksDoc(t *testing.T, ks ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": ks})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJWKSRotationThroughUnknownKID(t *testing.T) {
	k1, k2 := rsaKey(t), rsaKey(t)
	srv := newJWKSServer(t)
	srv.serve(200, jwksDoc(t, rsaJWK("k1", &k1.PublicKey)))
	remote := keys.NewRemote(keys.RemoteOptions{URL: srv.URL, RefreshInterval: time.Hour, UnknownKIDBurst: 1, UnknownKIDRefill: time.Hour})
	if err := remote.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, remote)})
	mintKID := func(key *rsa.PrivateKey, kid, user string) string {
		return mint(t, jwt.SigningMethodRS256, key, claimsFor(user), map[string]any{"kid": kid})
	}

	if resp := f.check(t, request(bearer(mintKID(k1, "k1", "u1")))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("k1 token: %v", resp.GetStatus())
	}

	// The issuer rotates in k2: the first k2 token refreshes the set.
	srv.serve(200, jwksDoc(t, rsaJWK("k1", &k1.PublicKey), rsaJWK("k2", &k2.PublicKey)))
	if resp := f.check(t, request(bearer(mintKID(k2, "k2", "u2")))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("k2 token after rotation: %v", resp.GetStatus())
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (start-up, then one for the new kid)", got)
	}

	// A flood of unknown kids: the limiter allows no further refresh, and no
	// Check waits for it to allow one. Its next token is an hour away, so a
	// Check that waited would still be waiting when the flood's bound runs
	// out. (The bound is far above a Check's cost: 2,000 concurrent Checks
	// under the race detector on a busy 2-core machine take seconds to get
	// through the queue, so a bound per Check would measure the queue.)
	const flood, kids = 2000, 50
	unknown := make([]string, kids)
	for i := range unknown {
		unknown[i] = mintKID(k2, fmt.Sprintf("unknown-%d", i), "u3")
	}
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range flood {
		wg.Go(func() {
			resp, err := f.client.Check(context.Background(), request(bearer(unknown[i%kids])))
			if err != nil {
				t.Error(err)
				return
			}
			if reason := denyReason(t, resp); reason != string(authz.ReasonUnknownKID) {
				t.Errorf("unknown kid: reason %q, want unknown_kid", reason)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		t.Logf("%d Checks of unknown kids answered in %v", flood, time.Since(begin))
	case <-time.After(2 * time.Minute):
		t.Fatalf("Checks of unknown kids still unanswered after 2m: a Check waits on the refresh limiter")
	}
	if got := srv.fetches.Load(); got != 2 {
		t.Errorf("fetches after %d unknown kids = %d, want still 2", flood, got)
	}
	// Keys that were there are still used.
	if resp := f.check(t, request(bearer(mintKID(k1, "k1", "u1")))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("k1 token after the flood: %v", resp.GetStatus())
	}
}

func TestJWKSOutageKeepsLastGoodKeys(t *testing.T) {
	k1, k2 := rsaKey(t), rsaKey(t)
	srv := newJWKSServer(t)
	// One malformed key in the set does not discard the good one beside it.
	malformed := map[string]any{"kty": "RSA", "kid": "bad", "n": "!!!", "e": "AQAB"}
	srv.serve(200, jwksDoc(t, malformed, rsaJWK("k1", &k1.PublicKey)))
	remote := keys.NewRemote(keys.RemoteOptions{URL: srv.URL})
	if err := remote.Refresh(context.Background()); err != nil {
		t.Fatalf("set with one malformed key: %v", err)
	}
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, remote)})
	tok := mint(t, jwt.SigningMethodRS256, k1, claimsFor("gina"), map[string]any{"kid": "k1"})

	for _, tc := range []struct {
		name   string
		status int
		body   []byte
	}{
		{"server error", http.StatusInternalServerError, []byte("oops")},
		{"garbage", http.StatusOK, []byte("<html>not json</html>")},
		{"empty set", http.StatusOK, []byte(`{"keys":[]}`)},
		{"only another key's kid, malformed", http.StatusOK, jwksDoc(t, malformed)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.serve(tc.status, tc.body)
			if err := remote.Refresh(context.Background()); err == nil {
				t.Fatalf("refresh succeeded, want an error")
			}
			if resp := f.check(t, request(bearer(tok))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
				t.Errorf("after a failed refresh the last good key is gone: %v", resp.GetStatus())
			}
		})
	}
	t.Run("server down", func(t *testing.T) {
		srv.Close()
		if err := remote.Refresh(context.Background()); err == nil {
			t.Fatal("refresh of a closed server succeeded")
		}
		if resp := f.check(t, request(bearer(tok))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Errorf("JWKS down: %v", resp.GetStatus())
		}
		// A key the set never had is still refused.
		other := mint(t, jwt.SigningMethodRS256, k2, claimsFor("gina"), map[string]any{"kid": "k2"})
		if reason := denyReason(t, f.check(t, request(bearer(other)))); reason != string(authz.ReasonUnknownKID) {
			t.Errorf("k2 token: reason %q, want unknown_kid", reason)
		}
	})
}

func TestJWKSNeverLoadedIsUnavailable(t *testing.T) {
	k1 := rsaKey(t)
	srv := newJWKSServer(t)
	srv.serve(http.StatusServiceUnavailable, nil)
	remote := keys.NewRemote(keys.RemoteOptions{URL: srv.URL})
	if err := remote.Refresh(context.Background()); err == nil {
		t.Fatal("refresh of a failing server succeeded")
	}
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, remote)})
	tok := mint(t, jwt.SigningMethodRS256, k1, claimsFor("hank"), map[string]any{"kid": "k1"})
	resp := f.check(t, request(bearer(tok)))
	assertDenied(t, resp, authz.ReasonKeysUnavailable, true)

	// When the server comes back, the source recovers by itself.
	srv.serve(200, jwksDoc(t, rsaJWK("k1", &k1.PublicKey)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go remote.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for remote.Current() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if resp := f.check(t, request(bearer(tok))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("after recovery: %v", resp.GetStatus())
	}
}

// TestMalformedTokenTriggersNoRefresh: an expired or malformed token is
// refused before any key lookup, so it cannot make the service fetch.
func TestMalformedTokenTriggersNoRefresh(t *testing.T) {
	k1 := rsaKey(t)
	srv := newJWKSServer(t)
	srv.serve(200, jwksDoc(t, rsaJWK("k1", &k1.PublicKey)))
	remote := keys.NewRemote(keys.RemoteOptions{URL: srv.URL, UnknownKIDBurst: 1000, UnknownKIDRefill: time.Nanosecond, UnknownKIDMemory: time.Nanosecond})
	if err := remote.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, remote)})
	expired := claimsFor("ivan")
	expired["exp"] = now.Add(-time.Hour).Unix()
	for _, tok := range []string{
		mint(t, jwt.SigningMethodRS256, k1, expired, map[string]any{"kid": "new-kid-1"}),
		mint(t, jwt.SigningMethodRS512, k1, claimsFor("ivan"), map[string]any{"kid": "new-kid-2"}),
	} {
		f.check(t, request(bearer(tok)))
	}
	if got := srv.fetches.Load(); got != 1 {
		t.Errorf("fetches = %d, want 1: a refused token triggered a refresh", got)
	}
}

// denyReason returns the JSON body's error of a deny, or "" for an allow.
func denyReason(t *testing.T, resp *authv3.CheckResponse) string {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil {
		return ""
	}
	var body struct{ Error string }
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("deny body %q: %v", d.GetBody(), err)
	}
	return body.Error
}
