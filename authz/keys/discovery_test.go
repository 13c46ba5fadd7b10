package keys_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jwtauthz/jwtauthz/authz/keys"
)

func discoveryDoc(t *testing.T, issuer, jwksURI string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"issuer": issuer, "jwks_uri": jwksURI, "response_types_supported": []string{"code"},
		"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDiscoveryURL: any trailing "/" of the issuer is removed before the
// well-known path is appended (OpenID Connect Discovery 1.0 §4).
func TestDiscoveryURL(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://idp.example":                 "https://idp.example/.well-known/openid-configuration",
		"https://idp.example/":                "https://idp.example/.well-known/openid-configuration",
		"https://idp.example/realms/demo":     "https://idp.example/realms/demo/.well-known/openid-configuration",
		"https://idp.example/tenant/v2.0/":    "https://idp.example/tenant/v2.0/.well-known/openid-configuration",
		"https://idp.example/oauth2/default/": "https://idp.example/oauth2/default/.well-known/openid-configuration",
	} {
		if got := keys.DiscoveryURL(issuer); got != want {
			t.Errorf("DiscoveryURL(%q) = %q, want %q", issuer, got, want)
		}
	}
}

// TestDiscovery: the document is read at {issuer}/.well-known/openid-configuration,
// its jwks_uri fetched, both refreshed together and conditionally.
func TestDiscovery(t *testing.T) {
	k1, k2 := generate(t, "RS256"), generate(t, "RS256")
	p := newIDP(t)
	issuer := p.URL + "/realms/demo/" // a trailing "/", compared exactly
	p.set("/realms/demo/.well-known/openid-configuration", page{body: discoveryDoc(t, issuer, p.URL+"/certs"), etag: `"d1"`})
	p.set("/certs", page{body: jwks(t, jwk(t, k1, map[string]any{"kid": "k1"})), etag: `"j1"`})
	r := keys.NewRemote(keys.RemoteOptions{DiscoveryIssuer: issuer})
	mustRefresh(t, r)
	if !r.Current().HasKID("k1") {
		t.Fatal("k1 not loaded through discovery")
	}
	mustRefresh(t, r)
	if h := p.lastHeaders("/realms/demo/.well-known/openid-configuration"); h.Get("If-None-Match") != `"d1"` {
		t.Errorf("discovery refetch If-None-Match = %q, want \"d1\"", h.Get("If-None-Match"))
	}
	if h := p.lastHeaders("/certs"); h.Get("If-None-Match") != `"j1"` {
		t.Errorf("JWKS refetch If-None-Match = %q, want \"j1\"", h.Get("If-None-Match"))
	}

	// The issuer moves its keys: the new jwks_uri is fetched (without the
	// old URL's validators).
	p.set("/realms/demo/.well-known/openid-configuration", page{body: discoveryDoc(t, issuer, p.URL+"/certs-v2"), etag: `"d2"`})
	p.set("/certs-v2", page{body: jwks(t, jwk(t, k2, map[string]any{"kid": "k2"})), etag: `"j1"`})
	mustRefresh(t, r)
	if set := r.Current(); !set.HasKID("k2") || set.HasKID("k1") {
		t.Errorf("after jwks_uri moved: k2 %v, k1 %v; want only k2", set.HasKID("k2"), set.HasKID("k1"))
	}
	if h := p.lastHeaders("/certs-v2"); h.Get("If-None-Match") != "" {
		t.Errorf("the new jwks_uri was fetched with the old URL's ETag %q", h.Get("If-None-Match"))
	}
}

// TestDiscoveryRefused: a document that fails a check loads no key, and
// its jwks_uri is never fetched. Before any key, the source answers
// ErrUnavailable; after, it keeps the last good keys.
func TestDiscoveryRefused(t *testing.T) {
	k1, evil := generate(t, "RS256"), generate(t, "RS256")
	for _, tc := range []struct {
		name    string
		doc     func(issuer, base string) page
		wantErr string
	}{
		{"issuer of another host", func(_, base string) page {
			return page{body: discoveryDoc(t, "http://keycloak.internal:8080/realms/demo", base+"/evil")}
		}, `its issuer "http://keycloak.internal:8080/realms/demo" is not the configured issuer`},
		{"issuer without its trailing slash", func(iss, base string) page {
			return page{body: discoveryDoc(t, strings.TrimSuffix(iss, "/"), base+"/evil")}
		}, "is not the configured issuer"},
		{"issuer of another case", func(iss, base string) page {
			return page{body: discoveryDoc(t, strings.ToUpper(iss[:4])+iss[4:], base+"/evil")}
		}, "is not the configured issuer"},
		{"no issuer", func(_, base string) page { return page{body: []byte(`{"jwks_uri":"` + base + `/evil"}`)} }, "has no issuer"},
		{"no jwks_uri", func(iss, _ string) page { return page{body: []byte(`{"issuer":"` + iss + `"}`)} }, "has no jwks_uri"},
		{"relative jwks_uri", func(iss, _ string) page { return page{body: discoveryDoc(t, iss, "/evil")} }, "is not an absolute http(s) URL"},
		{"jwks_uri of another scheme", func(iss, _ string) page { return page{body: discoveryDoc(t, iss, "file:///etc/evil")} }, "is not an absolute http(s) URL"},
		{"not JSON", func(string, string) page { return page{body: []byte("<html>")} }, "decode"},
		{"over 1 MiB", func(iss, base string) page {
			doc := discoveryDoc(t, iss, base+"/evil")
			return page{body: append(doc[:len(doc)-1], []byte(`,"padding":"`+strings.Repeat("x", 1<<20)+`"}`)...)}
		}, "is larger than 1048576 bytes"},
		{"HTTP 404", func(string, string) page { return page{status: http.StatusNotFound} }, "HTTP status 404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newIDP(t)
			issuer := p.URL + "/realms/demo/"
			docPath := "/realms/demo/.well-known/openid-configuration"
			p.set("/evil", page{body: jwks(t, jwk(t, evil, map[string]any{"kid": "evil"}))})
			p.set(docPath, tc.doc(issuer, p.URL))
			r := keys.NewRemote(keys.RemoteOptions{DiscoveryIssuer: issuer})
			err := r.Refresh(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Refresh: %v, want an error saying %q", err, tc.wantErr)
			}
			if r.Current() != nil || r.Loaded() {
				t.Fatalf("keys loaded from a refused document: %d", r.Current().Len())
			}
			if _, _, err := r.Lookup(context.Background(), nil, "evil", "RS256"); !errors.Is(err, keys.ErrUnavailable) {
				t.Errorf("Lookup: %v, want ErrUnavailable", err)
			}
			if _, err := verifier(r, "RS256").Verify(context.Background(), mint(t, evil, "RS256", map[string]any{"kid": "evil"}, nil)); !errors.Is(err, keys.ErrUnavailable) {
				t.Errorf("Verify: %v, want ErrUnavailable", err)
			}

			// A good document loads k1; the refused one again keeps k1.
			p.set("/certs", page{body: jwks(t, jwk(t, k1, map[string]any{"kid": "k1"}))})
			p.set(docPath, page{body: discoveryDoc(t, issuer, p.URL+"/certs")})
			mustRefresh(t, r)
			p.set(docPath, tc.doc(issuer, p.URL))
			if err := r.Refresh(context.Background()); err == nil {
				t.Fatal("a refused document refreshed without error")
			}
			if set := r.Current(); !set.HasKID("k1") || set.HasKID("evil") || set.Len() != 1 {
				t.Errorf("after the refused document: k1 %v, evil %v", set.HasKID("k1"), set.HasKID("evil"))
			}
			if n := p.fetches("/evil"); n != 0 {
				t.Errorf("the refused document's jwks_uri was fetched %d times", n)
			}
		})
	}
}

// TestDiscoveryHTTPSIssuerRefusesPlainHTTPKeys: an https issuer's keys are
// not taken over plain http.
func TestDiscoveryHTTPSIssuerRefusesPlainHTTPKeys(t *testing.T) {
	var base string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(discoveryDoc(t, base, "http://"+r.Host+"/certs"))
	}))
	defer srv.Close()
	base = srv.URL
	r := keys.NewRemote(keys.RemoteOptions{DiscoveryIssuer: base, Client: srv.Client()})
	if err := r.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "plain http, but the issuer is https") {
		t.Errorf("Refresh: %v, want the downgrade refused", err)
	}
}
