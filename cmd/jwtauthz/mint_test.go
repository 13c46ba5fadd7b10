package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/jwtauthz/jwtauthz/internal/signing"
)

var mintTestNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mintForTest runs "jwtauthz mint" with the clock at mintTestNow.
func mintForTest(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &cliEnv{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	err := mintCommand(env, args, func() time.Time { return mintTestNow })
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// mustMint is mintForTest that fails the test unless mint succeeds, and
// returns the token without its newline.
func mustMint(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, code := mintForTest(t, args...)
	if code != 0 {
		t.Fatalf("mint %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, stderr)
	}
	if !strings.HasSuffix(stdout, "\n") || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("mint output: want one line, got %q", stdout)
	}
	return strings.TrimSuffix(stdout, "\n")
}

// decodeSegment decodes one base64url JSON part of a compact JWT, keeping
// numbers as json.Number so their exact form can be checked.
func decodeSegment(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts, want 3: %q", len(parts), token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("segment %d: %v", i, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("segment %d: %v: %s", i, err, raw)
	}
	return m
}

func TestMint(t *testing.T) {
	tests := []struct {
		keyAlg     string   // keygen --alg
		keygenArgs []string // e.g. a smaller RSA key to keep the test fast
		alg        string   // mint --alg; "" lets mint choose
		wantAlg    string
	}{
		{keyAlg: "RS256", alg: "RS256", wantAlg: "RS256"},
		{keyAlg: "RS384", keygenArgs: []string{"--bits", "2048"}, alg: "RS384", wantAlg: "RS384"},
		{keyAlg: "RS512", keygenArgs: []string{"--bits", "2048"}, alg: "RS512", wantAlg: "RS512"},
		{keyAlg: "PS256", alg: "PS256", wantAlg: "PS256"},
		{keyAlg: "PS384", keygenArgs: []string{"--bits", "2048"}, alg: "PS384", wantAlg: "PS384"},
		{keyAlg: "PS512", keygenArgs: []string{"--bits", "2048"}, alg: "PS512", wantAlg: "PS512"},
		{keyAlg: "ES256", alg: "ES256", wantAlg: "ES256"},
		{keyAlg: "ES384", alg: "ES384", wantAlg: "ES384"},
		{keyAlg: "ES512", alg: "ES512", wantAlg: "ES512"},
		{keyAlg: "EdDSA", alg: "EdDSA", wantAlg: "EdDSA"},
		// Without --alg, the alg keygen recorded in the jwks.json beside the
		// key (an RSA key alone carries none: see TestMintAlgFromKeygen).
		{keyAlg: "RS512", keygenArgs: []string{"--bits", "2048"}, wantAlg: "RS512"},
		{keyAlg: "PS384", keygenArgs: []string{"--bits", "2048"}, wantAlg: "PS384"},
		{keyAlg: "RS256", wantAlg: "RS256"},
		{keyAlg: "ES256", wantAlg: "ES256"},
		{keyAlg: "ES384", wantAlg: "ES384"},
		{keyAlg: "ES512", wantAlg: "ES512"},
		{keyAlg: "EdDSA", wantAlg: "EdDSA"},
	}
	for _, tt := range tests {
		name := tt.keyAlg + "_key_alg_" + tt.alg
		if tt.alg == "" {
			name = tt.keyAlg + "_key_default_alg"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := keygenForTest(t, tt.keyAlg, tt.keygenArgs...)
			args := []string{"--key", filepath.Join(dir, "private.pem"), "--iss", "https://idp.example.com",
				"--aud", "api", "--aud", "admin", "--ttl", "90m", "--claim", "email=alice@example.com"}
			if tt.alg != "" {
				args = append(args, "--alg", tt.alg)
			}
			token := mustMint(t, append(args, "alice")...)

			pub := readPublicPEM(t, dir)
			parsed, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return pub, nil },
				jwt.WithValidMethods([]string{tt.wantAlg}),
				jwt.WithTimeFunc(func() time.Time { return mintTestNow.Add(time.Minute) }),
				jwt.WithExpirationRequired(),
				jwt.WithIssuedAt(),
				jwt.WithIssuer("https://idp.example.com"),
				jwt.WithAudience("admin"),
			)
			if err != nil {
				t.Fatalf("token does not verify with public.pem and %s pinned: %v", tt.wantAlg, err)
			}
			if parsed.Method.Alg() != tt.wantAlg {
				t.Errorf("alg: got %s, want %s", parsed.Method.Alg(), tt.wantAlg)
			}

			header := decodeSegment(t, token, 0)
			jwk, _ := readJWKS(t, dir)
			if header["kid"] != jwk.Marshal().KID {
				t.Errorf("kid header: got %v, want the JWKS kid %q", header["kid"], jwk.Marshal().KID)
			}
			if header["typ"] != "JWT" {
				t.Errorf("typ header: got %v, want JWT", header["typ"])
			}

			got := decodeSegment(t, token, 1)
			want := map[string]any{
				"username": "alice",
				"sub":      "alice",
				"iat":      json.Number("1772366400"),
				"exp":      json.Number("1772371800"), // iat + 90m
				"iss":      "https://idp.example.com",
				"aud":      []any{"api", "admin"},
				"email":    "alice@example.com",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}

			// The token must not verify as any other algorithm of the same key.
			other := map[string]string{"RS256": "PS256", "RS512": "PS512", "PS256": "RS256", "ES256": "ES384", "EdDSA": "RS256"}[tt.wantAlg]
			if other != "" {
				_, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return pub, nil },
					jwt.WithValidMethods([]string{other}),
					jwt.WithTimeFunc(func() time.Time { return mintTestNow }))
				if err == nil {
					t.Errorf("token verified with %s pinned instead of %s", other, tt.wantAlg)
				}
			}
		})
	}
}

func TestMintClaimValues(t *testing.T) {
	tests := []struct {
		claim string
		key   string
		want  any
	}{
		{"n=42", "n", json.Number("42")},
		{"big=12345678901234567890", "big", json.Number("12345678901234567890")},
		{"f=-1.5e3", "f", json.Number("-1.5e3")},
		{"t=true", "t", true},
		{"fl=false", "fl", false},
		{"nothing=null", "nothing", nil},
		{`arr=[1,"a",true]`, "arr", []any{json.Number("1"), "a", true}},
		{`obj={"realm_access":{"roles":["admin"]}}`, "obj", map[string]any{"realm_access": map[string]any{"roles": []any{"admin"}}}},
		{`quoted="42"`, "quoted", "42"},
		{`spaced= 7 `, "spaced", json.Number("7")},
		{"plain=hello world", "plain", "hello world"},
		{"empty=", "empty", ""},
		{"notjson={bad", "notjson", "{bad"},
		{"two=1 2", "two", "1 2"},
		{"trailing={} x", "trailing", "{} x"},
		{"eq=a=b", "eq", "a=b"},
		{"word=True", "word", "True"},
		{"exp=1700000000", "exp", json.Number("1700000000")},
		{"exp=soon", "exp", "soon"},
		{"username=bob", "username", "bob"},
		{"aud=[\"x\"]", "aud", []any{"x"}},
	}
	key := filepath.Join(keygenForTest(t, "ES256"), "private.pem")
	for _, tt := range tests {
		t.Run(tt.claim, func(t *testing.T) {
			token := mustMint(t, "--key", key, "--aud", "api", "--claim", tt.claim, "alice")
			claims := decodeSegment(t, token, 1)
			got, ok := claims[tt.key]
			if !ok {
				t.Fatalf("claim %q missing from %v", tt.key, claims)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("claim %q (-want +got):\n%s", tt.key, diff)
			}
			if tt.key != "username" && claims["username"] != "alice" {
				t.Errorf("username: got %v, want alice", claims["username"])
			}
		})
	}
}

func TestMintAudienceAndIssuer(t *testing.T) {
	key := filepath.Join(keygenForTest(t, "EdDSA"), "private.pem")
	tests := []struct {
		name string
		args []string
		want map[string]any // claims besides username, sub, iat, exp; nil value = absent
	}{
		{"none", nil, map[string]any{"aud": nil, "iss": nil}},
		{"one audience is a string", []string{"--aud", "api"}, map[string]any{"aud": "api"}},
		{"several audiences are an array", []string{"--aud", "a", "--aud", "b", "--aud", "c"}, map[string]any{"aud": []any{"a", "b", "c"}}},
		{"issuer", []string{"--iss", "https://idp"}, map[string]any{"iss": "https://idp", "aud": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"--key", key}, tt.args...), "alice")
			claims := decodeSegment(t, mustMint(t, args...), 1)
			for k, want := range tt.want {
				got, present := claims[k]
				if want == nil {
					if present {
						t.Errorf("claim %s: got %v, want absent", k, got)
					}
					continue
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("claim %s (-want +got):\n%s", k, diff)
				}
			}
		})
	}
}

func TestMintKID(t *testing.T) {
	dir := keygenForTest(t, "ES256")
	key := filepath.Join(dir, "private.pem")
	jwk, _ := readJWKS(t, dir)
	tests := []struct {
		name    string
		args    []string
		wantKID any // nil: no kid header
	}{
		{"default is the JWKS kid", nil, jwk.Marshal().KID},
		{"explicit", []string{"--kid", "2026-03"}, "2026-03"},
		{"empty omits it", []string{"--kid", ""}, nil},
		{"empty with equals sign omits it", []string{"--kid="}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"--key", key}, tt.args...), "alice")
			header := decodeSegment(t, mustMint(t, args...), 0)
			got, present := header["kid"]
			if tt.wantKID == nil {
				if present {
					t.Errorf("kid: got %v, want no kid header", got)
				}
				return
			}
			if got != tt.wantKID {
				t.Errorf("kid: got %v, want %v", got, tt.wantKID)
			}
		})
	}
}

func TestMintHMAC(t *testing.T) {
	for _, alg := range []string{"HS256", "HS384", "HS512"} {
		t.Run(alg, func(t *testing.T) {
			secret := make([]byte, 64)
			rand.Read(secret)
			secret = append(secret, '\n') // raw bytes: a trailing newline is part of the secret
			path := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(path, secret, 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := mintForTest(t, "--key", path, "--alg", alg, "alice")
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			if stderr != "" {
				t.Errorf("stderr: got %q, want nothing for a long secret", stderr)
			}
			token := strings.TrimSuffix(stdout, "\n")
			parsed, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return secret, nil },
				jwt.WithValidMethods([]string{alg}),
				jwt.WithTimeFunc(func() time.Time { return mintTestNow }),
				jwt.WithExpirationRequired())
			if err != nil {
				t.Fatalf("token does not verify with the secret file's bytes: %v", err)
			}
			if parsed.Claims.(jwt.MapClaims)["username"] != "alice" {
				t.Errorf("username: got %v, want alice", parsed.Claims.(jwt.MapClaims)["username"])
			}
			if _, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return bytes.TrimSpace(secret), nil },
				jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(func() time.Time { return mintTestNow })); err == nil {
				t.Error("token verifies with the trimmed secret; want the raw file bytes used")
			}
			if _, ok := decodeSegment(t, token, 0)["kid"]; ok {
				t.Error("HMAC token has a kid header by default; want none")
			}
		})
	}
}

func TestMintHMACShortSecretWarns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := mintForTest(t, "--key", path, "--alg", "HS256", "alice")
	if code != 0 || stdout == "" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "warning") || !strings.Contains(stderr, "32 bytes") {
		t.Errorf("stderr: want a warning about the 32-byte minimum, got %q", stderr)
	}
}

func TestMintRejects(t *testing.T) {
	rsaDir := keygenForTest(t, "RS256")
	ecDir := keygenForTest(t, "ES256")
	edDir := keygenForTest(t, "EdDSA")
	rsaKey := filepath.Join(rsaDir, "private.pem")
	ecKey := filepath.Join(ecDir, "private.pem")
	edKey := filepath.Join(edDir, "private.pem")
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		args       []string
		wantStderr []string
	}{
		{"EC alg for an RSA key", []string{"--key", rsaKey, "--alg", "ES256", "alice"}, []string{"ES256", "RSA 2048-bit key"}},
		{"other curve", []string{"--key", ecKey, "--alg", "ES384", "alice"}, []string{"ES384", "EC P-256 key"}},
		{"RSA alg for an Ed25519 key", []string{"--key", edKey, "--alg", "RS256", "alice"}, []string{"RS256", "Ed25519 key"}},
		{"PS alg for an EC key", []string{"--key", ecKey, "--alg", "PS256", "alice"}, []string{"PS256", "EC P-256 key"}},
		{"none", []string{"--key", rsaKey, "--alg", "none", "alice"}, []string{`"none"`, "RS256", "HS256"}},
		{"unknown alg", []string{"--key", rsaKey, "--alg", "RS1024", "alice"}, []string{`"RS1024"`, "EdDSA"}},
		{"private key as HMAC secret", []string{"--key", rsaKey, "--alg", "HS256", "alice"}, []string{rsaKey, "shared-secret"}},
		{"secret without HS alg", []string{"--key", secret, "alice"}, []string{"no PEM private key", "--alg HS256"}},
		{"secret with RS alg", []string{"--key", secret, "--alg", "RS256", "alice"}, []string{"no PEM private key"}},
		{"empty secret", []string{"--key", empty, "--alg", "HS256", "alice"}, []string{"empty"}},
		{"missing key file", []string{"--key", filepath.Join(rsaDir, "nope.pem"), "alice"}, []string{"nope.pem"}},
		{"no --key", []string{"alice"}, []string{"--key is required"}},
		{"no username", []string{"--key", rsaKey}, []string{"exactly one USERNAME"}},
		{"flag after username", []string{"--key", rsaKey, "alice", "--ttl", "1m"}, []string{"exactly one USERNAME"}},
		{"claim without equals", []string{"--key", rsaKey, "--claim", "role", "alice"}, []string{`"role"`, "key=value"}},
		{"claim without key", []string{"--key", rsaKey, "--claim", "=x", "alice"}, []string{`"=x"`, "key=value"}},
		{"bad ttl", []string{"--key", rsaKey, "--ttl", "soon", "alice"}, []string{"-ttl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := mintForTest(t, tt.args...)
			assertUsageError(t, stdout, stderr, code, tt.wantStderr...)
		})
	}
}

// TestMintLoadPrivateKey covers the PEM forms other tools write.
func TestMintLoadPrivateKey(t *testing.T) {
	rsaKey, err := signing.Generate("RS256", 0)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey.(*rsa.PrivateKey))})
	sec1DER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	// openssl ecparam -genkey writes the curve parameters before the key.
	sec1 := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22}}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1DER})...)

	tests := []struct {
		name    string
		data    []byte
		want    crypto.Signer // nil: an error is wanted
		wantErr string
	}{
		{"PKCS#1 RSA", pkcs1, rsaKey, ""},
		{"SEC 1 EC after EC PARAMETERS", sec1, ecKey, ""},
		{"public key only", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1}}), nil, "no PEM private key"},
		{"encrypted", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}), nil, "encrypted"},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), nil, "parse PRIVATE KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := signing.LoadPrivateKey(path)
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Errorf("signing.LoadPrivateKey: got %v, want an error naming %s and containing %q", err, path, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want.(interface{ Equal(crypto.PrivateKey) bool }).Equal(got) {
				t.Errorf("signing.LoadPrivateKey returned another key (%T)", got)
			}
			if _, err := signing.Mint(got, "alice", signing.Options{Now: mintTestNow, TTL: time.Minute}); err != nil {
				t.Errorf("signing.Mint with the loaded key: %v", err)
			}
		})
	}
}

// TestMintToken covers the Go API the demo uses.
func TestMintToken(t *testing.T) {
	key, err := signing.Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := signing.Thumbprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	token, err := signing.Mint(key, "alice", signing.Options{
		Issuer: "iss", Audience: []string{"aud"}, TTL: time.Hour, Now: mintTestNow,
		Claims: map[string]any{"sub": "user-1", "roles": []string{"a", "b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeSegment(t, token, 0)["kid"]; got != kid {
		t.Errorf("kid: got %v, want the signing.Thumbprint %s", got, kid)
	}
	want := map[string]any{
		"username": "alice", "sub": "user-1", "iss": "iss", "aud": "aud",
		"iat": json.Number("1772366400"), "exp": json.Number("1772370000"),
		"roles": []any{"a", "b"},
	}
	if diff := cmp.Diff(want, decodeSegment(t, token, 1)); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}

	if _, err := signing.Mint([]byte("secret"), "alice", signing.Options{}); err == nil || !strings.Contains(err.Error(), "HS256") {
		t.Errorf("signing.Mint(secret, no alg): got %v, want an error asking for HS256/384/512", err)
	}
	if _, err := signing.Mint([]byte("secret"), "alice", signing.Options{Alg: "RS256"}); err == nil {
		t.Error("signing.Mint(secret, RS256): got no error")
	}
	if _, err := signing.Mint(key, "", signing.Options{}); err == nil {
		t.Error("signing.Mint with an empty username: got no error")
	}
}

// TestMintAlgFromKeygen: an RSA key without keygen's jwks.json beside it
// carries no algorithm, so mint signs RS512, a provider's default allowlist.
func TestMintAlgFromKeygen(t *testing.T) {
	dir := keygenForTest(t, "PS256")
	if err := os.Remove(filepath.Join(dir, signing.JWKSFile)); err != nil {
		t.Fatal(err)
	}
	tok := mustMint(t, "--key", filepath.Join(dir, signing.PrivateKeyFile), "alice")
	if got := decodeSegment(t, tok, 0)["alg"]; got != "RS512" {
		t.Errorf("an RSA key without jwks.json: alg %v, want RS512", got)
	}
}
