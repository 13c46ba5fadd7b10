package config

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/internal/signing"
)

func TestParseConfigDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // "" for none: the config is accepted
	}{
		{"accepted", "providers: [{issuer: 'https://idp.example/realms/demo', discovery: true, algorithms: [RS256]}]", nil},
		{"accepted with static keys beside", "providers: [{issuer: 'https://idp.example/', discovery: true, algorithms: [RS256], pem_files: [k.pem]}]", nil},
		{"without issuer", "providers: [{discovery: true, algorithms: [RS256]}]", []string{"providers[0].discovery: needs issuer"}},
		{"with jwks_url", "providers: [{issuer: 'https://idp.example', discovery: true, jwks_url: 'https://idp.example/keys', algorithms: [RS256]}]",
			[]string{"providers[0].discovery: is refused together with jwks_url"}},
		{"issuer not a URL", "providers: [{issuer: idp, discovery: true, algorithms: [RS256]}]", []string{`providers[0].issuer: "idp" must be an http(s) URL when discovery is true`}},
		{"issuer with a query", "providers: [{issuer: 'https://u:pw@idp.example/?tenant=s3cret', discovery: true, algorithms: [RS256]}]",
			[]string{`providers[0].issuer: "https://REDACTED@idp.example/?REDACTED" must have no query`}},
		{"only HS algorithms", "providers: [{issuer: 'https://idp.example', discovery: true, algorithms: [HS256], hmac_secret_file: s}]",
			[]string{"providers[0].algorithms: public keys are configured but no RS/PS/ES/EdDSA"}},
		{"refresh under 1s", "providers: [{issuer: 'https://idp.example', discovery: true, algorithms: [RS256], jwks_refresh_interval: 10ms}]",
			[]string{"providers[0].jwks_refresh_interval: must be at least 1s"}},
		{"not a boolean", "providers: [{issuer: 'https://idp.example', discovery: yes please, algorithms: [RS256]}]", []string{"line 1", "yes please"}},
		{"jwks_url secrets never shown", "providers: [{jwks_url: 'ftp://client:s3cret@idp.example/keys?api_key=s3cret', algorithms: [RS256]}]",
			[]string{`providers[0].jwks_url: "ftp://REDACTED@idp.example/keys?REDACTED" must be an http(s) URL`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.doc))
			if tc.want == nil {
				if err != nil || !cfg.Providers[0].Discovery {
					t.Fatalf("Parse: %v, discovery %v", err, cfg != nil && cfg.Providers[0].Discovery)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}

// TestBuildProvidersRefusesRSAKeySizes: an RSA key under 2048 or over 8192
// bits is refused at load from pem_files and jwks_file, the error naming
// the config key, the file and the key.
func TestBuildProvidersRefusesRSAKeySizes(t *testing.T) {
	dir := t.TempDir()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 16383))
	huge := &rsa.PublicKey{N: n.SetBit(n, 16383, 1).SetBit(n, 0, 1), E: 65537} // a size check reads only the modulus
	der, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	smallPEM := filepath.Join(dir, "small.pem")
	os.WriteFile(smallPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	hugeJWKS := filepath.Join(dir, "huge.json")
	j, _ := signing.PublicJWK(huge)
	j.KID = "huge-1"
	b, _ := json.Marshal(map[string]any{"keys": []any{j}})
	os.WriteFile(hugeJWKS, b, 0o600)
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"1024-bit PEM", "providers: [{algorithms: [RS256], pem_files: [" + smallPEM + "]}]",
			[]string{"providers[0].pem_files[0]", smallPEM, "PEM block 0: RSA key of 1024 bits is too small (minimum 2048)"}},
		{"16384-bit JWK", "providers: [{algorithms: [RS256], jwks_file: " + hugeJWKS + "}]",
			[]string{"providers[0].jwks_file", hugeJWKS, `kid "huge-1": RSA key of 16384 bits is too large (maximum 8192)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			_, err = BuildProviders(cfg, BuildOptions{})
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not contain %q", err, w)
				}
			}
		})
	}
}

// shape is an identity provider as a real one publishes itself: where its
// discovery document and keys live, what its keys and tokens look like.
type shape struct {
	name      string
	issuer    func(base string) string
	docPath   string
	jwksPath  string
	keys      []shapeKey
	algs      []string
	audiences []string
	username  string         // the provider's username_claim
	claims    jwt.MapClaims  // beside iss, iat, exp
	header    map[string]any // beside alg, typ, kid
	// docIssuer, when set, is the issuer the document states instead of
	// the configured one.
	docIssuer string
}

// shapeKey is a key of the set; enc keys must be skipped.
type shapeKey struct {
	kid, alg string
	use      string
	noAlg    bool // the JWK has no alg member (Entra ID)
	x5c      bool
	extra    map[string]any
	signer   crypto.Signer
}

var shapeKeys struct {
	once sync.Once
	rsa  []crypto.Signer
	ec   crypto.Signer
	err  error
}

// testKeys generates the keys the shapes use, once per test binary.
func testKeys(t *testing.T) ([]crypto.Signer, crypto.Signer) {
	t.Helper()
	shapeKeys.once.Do(func() {
		for range 6 {
			k, err := signing.Generate("RS256", 2048)
			if err != nil {
				shapeKeys.err = err
				return
			}
			shapeKeys.rsa = append(shapeKeys.rsa, k)
		}
		shapeKeys.ec, shapeKeys.err = signing.Generate("ES256", 0)
	})
	if shapeKeys.err != nil {
		t.Fatal(shapeKeys.err)
	}
	return shapeKeys.rsa, shapeKeys.ec
}

func shapes(t *testing.T) []shape {
	r, ec := testKeys(t)
	const tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
	return []shape{
		{
			name:     "keycloak",
			issuer:   func(b string) string { return b + "/realms/demo" },
			docPath:  "/realms/demo/.well-known/openid-configuration",
			jwksPath: "/realms/demo/protocol/openid-connect/certs",
			keys: []shapeKey{
				{kid: "kc-enc", alg: "RSA-OAEP", use: "enc", x5c: true, signer: r[0]},
				{kid: "kc-rs", alg: "RS256", use: "sig", x5c: true, signer: r[1]},
				{kid: "kc-es", alg: "ES256", use: "sig", signer: ec},
			},
			algs:     []string{"RS256", "ES256"},
			username: "preferred_username",
			claims: jwt.MapClaims{"aud": "account", "sub": "f1b5e0c4-3c4e-4a8e-9d1a-2b7c9f0e6a11", "typ": "Bearer", "azp": "web",
				"preferred_username": "alice", "realm_access": map[string]any{"roles": []string{"offline_access", "admin"}},
				"scope": "openid profile email", "email_verified": true},
		},
		{
			name:     "auth0",
			issuer:   func(b string) string { return b + "/" }, // Auth0's issuer ends with "/"
			docPath:  "/.well-known/openid-configuration",
			jwksPath: "/.well-known/jwks.json",
			keys: []shapeKey{
				{kid: "a0-old", alg: "RS256", use: "sig", x5c: true, signer: r[2]},
				{kid: "a0-new", alg: "RS256", use: "sig", x5c: true, signer: r[3]},
			},
			algs:      []string{"RS256"},
			audiences: []string{"https://api.example.com"},
			username:  "sub",
			claims: jwt.MapClaims{"sub": "auth0|64f1c2", "aud": []string{"https://api.example.com", "https://tenant.example/userinfo"},
				"azp": "Xy9", "scope": "openid profile orders:read", "permissions": []string{"orders:read"}},
		},
		{
			name:     "okta",
			issuer:   func(b string) string { return b + "/oauth2/default" },
			docPath:  "/oauth2/default/.well-known/openid-configuration",
			jwksPath: "/oauth2/default/v1/keys",
			keys:     []shapeKey{{kid: "okta-1", alg: "RS256", use: "sig", signer: r[4]}},
			algs:     []string{"RS256"},
			username: "sub",
			claims: jwt.MapClaims{"ver": 1, "jti": "AT.x1", "aud": "api://default", "cid": "0oa1", "uid": "00u1",
				"scp": []string{"openid", "email"}, "sub": "alice@example.com"},
		},
		{
			name:     "google",
			issuer:   func(b string) string { return b },
			docPath:  "/.well-known/openid-configuration",
			jwksPath: "/oauth2/v3/certs",
			keys: []shapeKey{
				{kid: "g-1", alg: "RS256", use: "sig", signer: r[5]},
				{kid: "g-2", alg: "RS256", use: "sig", signer: r[2]},
			},
			algs:      []string{"RS256"},
			audiences: []string{"1234-abc.apps.googleusercontent.com"},
			username:  "email",
			claims: jwt.MapClaims{"azp": "1234-abc.apps.googleusercontent.com", "aud": "1234-abc.apps.googleusercontent.com",
				"sub": "110169484474386276334", "email": "alice@example.com", "email_verified": true, "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q"},
		},
		{
			name:     "entra",
			issuer:   func(b string) string { return b + "/" + tenant + "/v2.0" },
			docPath:  "/" + tenant + "/v2.0/.well-known/openid-configuration",
			jwksPath: "/" + tenant + "/discovery/v2.0/keys",
			keys: []shapeKey{ // Entra ID's keys carry no alg, an x5t, an x5c and an issuer
				{kid: "e-1", use: "sig", noAlg: true, x5c: true, signer: r[0]},
				{kid: "e-2", use: "sig", noAlg: true, x5c: true, signer: r[1]},
				{kid: "e-3", use: "sig", noAlg: true, x5c: true, signer: r[4]},
			},
			algs:      []string{"RS256"},
			audiences: []string{"6e74172b-be56-4843-9ff4-e66a39bb12e3"},
			username:  "preferred_username",
			header:    map[string]any{"x5t": "set per key"},
			claims: jwt.MapClaims{"aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
				"tid": tenant, "preferred_username": "alice@contoso.com", "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "ver": "2.0",
				"nbf": time.Now().Add(-time.Minute).Unix(), "uti": "x", "rh": "0.AAAA"},
		},
	}
}

// serveShape serves s's discovery document and key set on a real loopback
// server and returns the configured issuer and the JWKS fetch counter.
func serveShape(t *testing.T, s shape) (issuer string, jwksFetches func() int) {
	t.Helper()
	var mu sync.Mutex
	fetches := 0
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	issuer = s.issuer(srv.URL)
	docIssuer := issuer
	if s.docIssuer != "" {
		docIssuer = s.docIssuer
	}
	doc, _ := json.Marshal(map[string]any{
		"issuer": docIssuer, "jwks_uri": srv.URL + s.jwksPath,
		"authorization_endpoint": srv.URL + "/authorize", "token_endpoint": srv.URL + "/token",
		"response_types_supported": []string{"code", "id_token"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": s.algs,
	})
	var members []map[string]any
	for _, k := range s.keys {
		members = append(members, shapeJWK(t, k, issuer))
	}
	set, _ := json.Marshal(map[string]any{"keys": members})
	mux.HandleFunc("GET "+s.docPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})
	mux.HandleFunc("GET "+s.jwksPath, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		fetches++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(set)
	})
	return issuer, func() int {
		mu.Lock()
		defer mu.Unlock()
		return fetches
	}
}

func shapeJWK(t *testing.T, k shapeKey, issuer string) map[string]any {
	t.Helper()
	j, err := signing.PublicJWK(k.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	j.KID, j.Use, j.Alg = k.kid, k.use, k.alg
	b, _ := json.Marshal(j)
	var m map[string]any
	json.Unmarshal(b, &m)
	if k.x5c {
		der := selfSigned(t, k.signer, k.kid)
		s1, s256 := sha1.Sum(der), sha256.Sum256(der)
		m["x5c"] = []string{base64.StdEncoding.EncodeToString(der)}
		m["x5t"] = base64.RawURLEncoding.EncodeToString(s1[:])
		m["x5t#S256"] = base64.RawURLEncoding.EncodeToString(s256[:])
	}
	if k.noAlg {
		m["issuer"] = issuer
	}
	return m
}

// selfSigned makes a certificate for key, as IdPs publish in x5c.
func selfSigned(t *testing.T, key crypto.Signer, cn string) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// mintShape signs a token as s's provider would with key k.
func mintShape(t *testing.T, s shape, issuer string, k shapeKey, header map[string]any) string {
	t.Helper()
	alg := k.alg
	if alg == "" || alg == "RSA-OAEP" {
		alg = "RS256"
	}
	now := time.Now()
	c := jwt.MapClaims{"iss": issuer, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for name, v := range s.claims {
		c[name] = v
	}
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(alg), c)
	tok.Header["kid"] = k.kid
	for name := range s.header {
		if name == "x5t" && k.x5c {
			s1 := sha1.Sum(selfSigned(t, k.signer, k.kid))
			tok.Header["x5t"] = base64.RawURLEncoding.EncodeToString(s1[:])
		}
	}
	for name, v := range header {
		if v == nil {
			delete(tok.Header, name)
			continue
		}
		tok.Header[name] = v
	}
	raw, err := tok.SignedString(k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestDiscoveryIdPShapes: five providers with discovery: true, each served
// as Keycloak, Auth0, Okta, Google and Microsoft Entra ID serve theirs, built
// by BuildProviders: every one's tokens verify through the real router
// (routed by iss), with every signing key and algorithm the set publishes;
// use "enc" keys are skipped; a kid never reaches another kid's key; a
// token without a kid is tried against the set.
func TestDiscoveryIdPShapes(t *testing.T) {
	dir := t.TempDir()
	schema := filepath.Join(dir, "schema.json")
	os.WriteFile(schema, []byte(`{"type":"object","required":["exp"]}`), 0o600)
	ss := shapes(t)
	issuers := map[string]string{}
	var doc strings.Builder
	doc.WriteString("providers:\n")
	for _, s := range ss {
		iss, _ := serveShape(t, s)
		issuers[s.name] = iss
		aud, _ := json.Marshal(s.audiences)
		algs, _ := json.Marshal(s.algs)
		fmt.Fprintf(&doc, "  - {name: %s, issuer: %q, discovery: true, algorithms: %s, audiences: %s, username_claim: %s, claims_schema: %s, leeway: 0s}\n",
			s.name, iss, algs, aud, s.username, schema)
	}
	cfg, err := Parse([]byte(doc.String()))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := BuildProviders(cfg, BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.RefreshOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !ps.Ready() {
		t.Fatal("not every provider has keys")
	}
	for _, s := range ss {
		t.Run(s.name, func(t *testing.T) {
			iss := issuers[s.name]
			usable := 0
			for _, k := range s.keys {
				res, provider, err := ps.Router.Verify(context.Background(), mintShape(t, s, iss, k, nil))
				if k.use == "enc" {
					if !errors.Is(err, keys.ErrUnknownKID) {
						t.Errorf("a token signed with the use:enc key %s: %v, want unknown kid (the key is skipped)", k.kid, err)
					}
					continue
				}
				usable++
				if err != nil {
					t.Errorf("token signed with %s (%s): %v", k.kid, k.alg, err)
					continue
				}
				if want, _ := s.claims[s.username].(string); provider != s.name || res.Username != want {
					t.Errorf("verified as %s/%s, want %s/%s", provider, res.Username, s.name, want)
				}
			}
			if got := ps.Sources[s.name].Current().Len(); got != usable {
				t.Errorf("%d keys loaded, want %d (the signing keys)", got, usable)
			}
			k := s.keys[len(s.keys)-1]
			if _, _, err := ps.Router.Verify(context.Background(), mintShape(t, s, iss, k, map[string]any{"kid": nil, "x5t": nil})); err != nil {
				t.Errorf("the token without a kid: %v, want it verified (Envoy's kid rule)", err)
			}
			if len(s.keys) > 1 {
				other := s.keys[len(s.keys)-2]
				_, _, err := ps.Router.Verify(context.Background(), mintShape(t, s, iss, k, map[string]any{"kid": other.kid}))
				if err == nil {
					t.Errorf("a token naming %s's kid, signed by %s: %v, want refused", other.kid, k.kid, err)
				}
			}
		})
	}
}

// TestDiscoveryIssuerMismatchLoadsNoKeys: a discovery document whose issuer
// is not the configured one (Entra ID's multi-tenant "common" document, a
// Keycloak that reports its internal address) loads no key: the provider
// stays without keys, not Ready, and its tokens are keys_unavailable (HTTP
// 503), never verified; its key set is never fetched.
func TestDiscoveryIssuerMismatchLoadsNoKeys(t *testing.T) {
	r, _ := testKeys(t)
	for _, s := range []shape{
		{name: "entra-common", issuer: func(b string) string { return b + "/common/v2.0" },
			docIssuer: "https://login.microsoftonline.com/{tenantid}/v2.0",
			docPath:   "/common/v2.0/.well-known/openid-configuration", jwksPath: "/common/discovery/v2.0/keys",
			keys: []shapeKey{{kid: "e-1", use: "sig", noAlg: true, x5c: true, signer: r[0]}}, algs: []string{"RS256"}},
		{name: "keycloak-behind-a-proxy", issuer: func(b string) string { return b + "/realms/demo" },
			docIssuer: "http://keycloak.keycloak.svc:8080/realms/demo",
			docPath:   "/realms/demo/.well-known/openid-configuration", jwksPath: "/realms/demo/protocol/openid-connect/certs",
			keys: []shapeKey{{kid: "kc-rs", alg: "RS256", use: "sig", signer: r[1]}}, algs: []string{"RS256"}},
	} {
		t.Run(s.name, func(t *testing.T) {
			iss, jwksFetches := serveShape(t, s)
			cfg, err := Parse([]byte(fmt.Sprintf("providers: [{name: idp, issuer: %q, discovery: true, algorithms: [RS256], username_claim: sub}]", iss)))
			if err != nil {
				t.Fatal(err)
			}
			ps, err := BuildProviders(cfg, BuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			err = ps.RefreshOnce(context.Background())
			if err == nil || !strings.Contains(err.Error(), "is not the configured issuer") {
				t.Fatalf("RefreshOnce: %v, want the issuer mismatch", err)
			}
			if set := ps.Sources["idp"].Current(); set != nil || ps.Ready() {
				t.Fatalf("keys loaded from a mismatched document: %d, ready %v", set.Len(), ps.Ready())
			}
			_, _, err = ps.Router.Verify(context.Background(), mintShape(t, s, iss, s.keys[0], nil))
			if !errors.Is(err, keys.ErrUnavailable) || authz.Classify(err) != authz.ReasonKeysUnavailable {
				t.Errorf("Verify: %v (reason %s), want keys_unavailable", err, authz.Classify(err))
			}
			if n := jwksFetches(); n != 0 {
				t.Errorf("the mismatched document's jwks_uri was fetched %d times", n)
			}
		})
	}
}

var _ token.KeySource = KeySource(nil)
