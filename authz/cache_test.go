package authz_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

func TestCachedTokenRefusedOnceExpired(t *testing.T) {
	key := rsaKey(t)
	leeway := 30 * time.Second
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}, Leeway: leeway}, staticKeys(&key.PublicKey))})
	c := claimsFor("kim")
	exp := now.Add(time.Minute)
	c["exp"] = exp.Unix()
	tok := mint(t, jwt.SigningMethodRS256, key, c, nil)

	if resp := f.check(t, request(bearer(tok))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("fresh token: %v", resp.GetStatus())
	}
	// Just before exp + leeway the cached verification still holds...
	setClock(t, exp.Add(leeway).Add(-time.Nanosecond))
	if resp := f.check(t, request(bearer(tok))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("before exp+leeway: %v", resp.GetStatus())
	}
	// ...and at exp + leeway it does not, exactly as the verifier decides.
	setClock(t, exp.Add(leeway))
	assertDenied(t, f.check(t, request(bearer(tok))), authz.ReasonExpired, true)
}

func TestCachedTokenRefusedWhenItsKeyLeavesTheSet(t *testing.T) {
	k1, k2 := rsaKey(t), rsaKey(t)
	srv := newJWKSServer(t)
	srv.serve(http.StatusOK, jwksDoc(t, rsaJWK("k1", &k1.PublicKey)))
	remote := keys.NewRemote(keys.RemoteOptions{URL: srv.URL})
	if err := remote.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, remote)})
	tok := mint(t, jwt.SigningMethodRS256, k1, claimsFor("lee"), map[string]any{"kid": "k1"})
	for range 2 { // the second answer comes from the cache
		if resp := f.check(t, request(bearer(tok))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("k1 token: %v", resp.GetStatus())
		}
	}
	srv.serve(http.StatusOK, jwksDoc(t, rsaJWK("k2", &k2.PublicKey)))
	if err := remote.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertDenied(t, f.check(t, request(bearer(tok))), authz.ReasonUnknownKID, true)
}

func TestCachedTokenOfDeactivatedUserRefused(t *testing.T) {
	key := rsaKey(t)
	f := start(t, fixtureOptions{verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey))})
	tok := mint(t, jwt.SigningMethodRS256, key, claimsFor("mo"), nil)
	for range 2 {
		if resp := f.check(t, request(bearer(tok))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("before deactivation: %v", resp.GetStatus())
		}
	}
	if _, err := f.db.SetActive(context.Background(), "default", "mo", false); err != nil {
		t.Fatal(err)
	}
	assertDenied(t, f.check(t, request(bearer(tok))), authz.ReasonUserInactive, true)
	if _, err := f.db.SetActive(context.Background(), "default", "mo", true); err != nil {
		t.Fatal(err)
	}
	if resp := f.check(t, request(bearer(tok))); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("after reactivation: %v", resp.GetStatus())
	}
}

func TestCacheCountsHitsAndMisses(t *testing.T) {
	key := rsaKey(t)
	reg := prometheus.NewRegistry()
	metrics := authz.NewMetrics(reg)
	f := start(t, fixtureOptions{
		verifier: singleProvider(t, token.Options{Algorithms: []string{"RS256"}}, staticKeys(&key.PublicKey)),
		metrics:  metrics,
	})
	tok := mint(t, jwt.SigningMethodRS256, key, claimsFor("nia"), nil)
	for range 3 {
		f.check(t, request(bearer(tok)))
	}
	f.check(t, request(bearer(tok[:len(tok)-2]+"xx"))) // invalid: a miss, never stored
	f.check(t, request(bearer(tok[:len(tok)-2]+"xx")))
	got := map[string]float64{}
	for _, r := range []string{"hit", "miss"} {
		got[r] = testutil.ToFloat64(metrics.CacheRequests(r))
	}
	if got["hit"] != 2 || got["miss"] != 3 {
		t.Errorf("cache hits %v misses %v, want 2 and 3", got["hit"], got["miss"])
	}
}
