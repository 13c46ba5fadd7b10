package token_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtauthz/jwtauthz/authz/claims"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

// The fuzz providers' keys. The RSA and P-256 private keys that signed the
// committed seeds (testdata/fuzz/FuzzVerify) were thrown away; the Ed25519
// key and the HMAC secrets are fixed here, so the target also mints seeds.
const (
	fuzzRSAPublicPEM = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxkI/i4kD+XAouac7/JPy
ResJLjD5Ldug60ESS/miQCVsO6aOgGmbm0vnoNGCWyqpx0mDLWH9+Xk988HluNKT
s8U145Mqt5UkxhGNW6MnoyHu0PKlq5cUy4so3GbLHJ0gqlrDQGyFzLT7yFlOFSiY
0qZD4mYZcc56Fo4JP0JsLW+PucTzeOOmCAJF4L4kLLgQeaziaTlf1XBzoVgnFHbo
jzhHUg0flaRKgf88d+zjIQvYH6TpQxQgU+g75oUxxlgMVeDpsOwdkI8YDirmwVYF
Lihee0Mh0tiaM75PV5ERY/33tQL6jx7FdBEXba6z2yA9O2rdZYM4FHE72PRZ++Km
GwIDAQAB
-----END PUBLIC KEY-----
`
	fuzzECPublicPEM = `-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEe5vLP0lc9q5Rt9jV2vwwGSOSszmL
9SO1UHiCnT4HS8V3ZLp5FD4sBFDr5aSO3Phtoi/xvvzWygsd65L+8CDOEg==
-----END PUBLIC KEY-----
`
	fuzzOtherIssuer = "https://other.example"
)

var (
	fuzzNow         = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	fuzzEdSeed      = bytes.Repeat([]byte{7}, ed25519.SeedSize)
	fuzzSecret      = []byte("fuzz-secret-of-provider-default-0123")
	fuzzOtherSecret = []byte("fuzz-secret-of-provider-other-45678")
)

// fuzzProvider is one provider as the oracle sees it: its keys and rules,
// kept apart from the verifier's own key selection.
type fuzzProvider struct {
	name      string
	issuer    string
	audiences []string
	algs      []string
	keys      []keys.Key
}

func fuzzProviders(t testing.TB) []fuzzProvider {
	parse := func(s string) any {
		block, _ := pem.Decode([]byte(s))
		if block == nil {
			t.Fatal("bad PEM in the fuzz target")
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ed := ed25519.NewKeyFromSeed(fuzzEdSeed).Public()
	return []fuzzProvider{
		{
			name: "default",
			algs: []string{"RS256", "PS256", "ES256", "EdDSA", "HS256"},
			keys: []keys.Key{
				{Public: parse(fuzzRSAPublicPEM)},
				{ID: "ec-1", Public: parse(fuzzECPublicPEM)},
				{ID: "ed-1", Alg: "EdDSA", Public: ed},
				{Public: fuzzSecret},
			},
		},
		{
			name:      "other",
			issuer:    fuzzOtherIssuer,
			audiences: []string{"api"},
			algs:      []string{"HS256", "HS512"},
			keys:      []keys.Key{{Public: fuzzOtherSecret}},
		},
	}
}

func fuzzRouter(t testing.TB, ps []fuzzProvider) *token.Router {
	schema, err := claims.Compile("")
	if err != nil {
		t.Fatal(err)
	}
	var vs []*token.Verifier
	for _, p := range ps {
		vs = append(vs, token.NewVerifier(token.Options{
			Provider:   p.name,
			Issuer:     p.issuer,
			Audiences:  p.audiences,
			Algorithms: p.algs,
			Leeway:     30 * time.Second,
			Keys:       keys.NewStatic(keys.NewSet(p.keys, 1)),
			Schema:     schema,
			Now:        func() time.Time { return fuzzNow },
		}))
	}
	r, err := token.NewRouter(vs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// FuzzVerify mutates tokens, valid ones among them, and checks that
// Router.Verify never accepts one that is not signed by a key of the
// provider it names, under an algorithm that provider allows: every
// accepted token must also verify with golang-jwt against one of that
// provider's keys with the algorithm pinned and the same time, issuer and
// audience rules. Failures must carry one of the documented reasons.
func FuzzVerify(f *testing.F) {
	ps := fuzzProviders(f)
	r := fuzzRouter(f, ps)
	mint := func(m jwt.SigningMethod, key any, c jwt.MapClaims, header map[string]any) string {
		tok := jwt.NewWithClaims(m, c)
		for k, v := range header {
			tok.Header[k] = v
		}
		s, err := tok.SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	claimsOf := func(user string) jwt.MapClaims {
		return jwt.MapClaims{"username": user, "sub": user, "iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Hour).Unix()}
	}
	edKey := ed25519.NewKeyFromSeed(fuzzEdSeed)
	f.Add(mint(jwt.SigningMethodHS256, fuzzSecret, claimsOf("frank"), nil))
	f.Add(mint(jwt.SigningMethodEdDSA, edKey, claimsOf("grace"), map[string]any{"kid": "ed-1"}))
	f.Add(mint(jwt.SigningMethodEdDSA, edKey, claimsOf("heidi"), nil)) // no kid: no kid-less Ed25519 key
	other := claimsOf("ivan")
	other["iss"], other["aud"] = fuzzOtherIssuer, "api"
	f.Add(mint(jwt.SigningMethodHS512, fuzzOtherSecret, other, nil))
	f.Add(mint(jwt.SigningMethodHS256, fuzzSecret, other, nil)) // the other provider's token, our secret
	// The second attack round's shapes: usernames the upstream would see
	// as another user, and payloads read two ways.
	for _, user := range []string{"frank ", "\u00a0frank", "fra\u0301nk"} {
		f.Add(mint(jwt.SigningMethodHS256, fuzzSecret, claimsOf(user), nil))
	}
	rawHS256 := func(header, payload string) string {
		enc := base64.RawURLEncoding.EncodeToString
		signing := enc([]byte(header)) + "." + enc([]byte(payload))
		sig, err := jwt.SigningMethodHS256.Sign(signing, fuzzSecret)
		if err != nil {
			f.Fatal(err)
		}
		return signing + "." + enc(sig)
	}
	exp := fuzzNow.Add(time.Hour).Unix()
	f.Add(rawHS256(`{"alg":"HS256"}`, fmt.Sprintf(`{"username":"frank","exp":%d} {"username":"root"}`, exp)))
	f.Add(rawHS256(`{"alg":"HS256"} {"alg":"none"}`, fmt.Sprintf(`{"username":"frank","exp":%d}`, exp)))
	f.Add(rawHS256(`{"alg":"HS256"}`, fmt.Sprintf("{\"username\":\"fr\xffank\",\"exp\":%d}", exp)))
	f.Add(rawHS256(`{"alg":"HS256"}`, fmt.Sprintf(`{"username":"frank","realm_access.roles":"admin","exp":%d}`, exp)))

	byName := make(map[string]fuzzProvider, len(ps))
	for _, p := range ps {
		byName[p.name] = p
	}
	f.Fuzz(func(t *testing.T, raw string) {
		res, provider, err := r.Verify(context.Background(), raw)
		if err != nil {
			if res != nil {
				t.Fatalf("Verify failed (%v) and returned a result", err)
			}
			if !documented(err) {
				t.Fatalf("Verify failed with an error that carries no documented reason: %v", err)
			}
			return
		}
		p, ok := byName[res.Provider]
		if !ok || provider != res.Provider {
			t.Fatalf("accepted for provider %q (result names %q), which is not configured", provider, res.Provider)
		}
		if res.Username == "" {
			t.Fatal("accepted with an empty username")
		}
		if !signedByProvider(raw, p) {
			t.Fatalf("accepted a token that no key of provider %q verifies under golang-jwt with the algorithm pinned: %q", p.name, raw)
		}
	})
}

// signedByProvider reports whether golang-jwt, on its own, accepts raw with
// one of p's keys, its algorithm pinned to one p allows.
func signedByProvider(raw string, p fuzzProvider) bool {
	tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return false
	}
	alg, _ := tok.Header["alg"].(string)
	allowed := false
	for _, a := range p.algs {
		allowed = allowed || a == alg
	}
	if !allowed {
		return false
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{alg}),
		jwt.WithTimeFunc(func() time.Time { return fuzzNow }),
		jwt.WithLeeway(30 * time.Second),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if p.issuer != "" {
		opts = append(opts, jwt.WithIssuer(p.issuer))
	}
	if len(p.audiences) > 0 {
		opts = append(opts, jwt.WithAudience(p.audiences...))
	}
	for _, k := range p.keys {
		_, err := jwt.NewParser(opts...).Parse(raw, func(*jwt.Token) (any, error) { return k.Public, nil })
		if err == nil {
			return true
		}
	}
	return false
}

// documented reports whether err carries one of the reasons a Check
// classifies (authz.Classify): the token package's, the key sources' or
// the claims schema's.
func documented(err error) bool {
	for _, want := range []error{
		token.ErrMalformed, token.ErrAlgorithm, token.ErrExpired, token.ErrNotYetValid,
		token.ErrIssuer, token.ErrAudience, token.ErrSignature, token.ErrClaims,
		keys.ErrUnknownKID, keys.ErrUnavailable, claims.ErrInvalid,
	} {
		if errors.Is(err, want) {
			return true
		}
	}
	return false
}

// TestFuzzVerifySeeds pins what the committed seeds are, so the corpus does
// not rot into tokens that are all refused: the fuzzer needs accepted ones
// to mutate from.
func TestFuzzVerifySeeds(t *testing.T) {
	r := fuzzRouter(t, fuzzProviders(t))
	accepted := map[string]bool{
		"rs256-valid": true, "ps256-valid": true, "es256-kid-valid": true, "eddsa-kid-valid": true,
		"hs256-valid": true, "hs256-other-issuer": true, "nested-claims": true, "payload-json": true,
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzVerify")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a one-string fuzz corpus file", e.Name())
		}
		raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		_, _, err = r.Verify(context.Background(), raw)
		if got, want := err == nil, accepted[e.Name()]; got != want {
			t.Errorf("seed %s: accepted = %v (err %v), want %v", e.Name(), got, err, want)
		}
		if accepted[e.Name()] {
			seen++
		}
	}
	if seen != len(accepted) {
		t.Errorf("found %d of the %d accepted seeds", seen, len(accepted))
	}
}
