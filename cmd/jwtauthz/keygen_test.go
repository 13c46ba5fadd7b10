package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/MicahParks/jwkset"

	"github.com/jwtauthz/jwtauthz/internal/signing"
)

// runForTest runs the jwtauthz command line as main does and returns what
// it printed and its exit status.
func runForTest(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	getenv := func(string) string { return "" }
	err := run(context.Background(), args, getenv, strings.NewReader(""), &out, &errOut)
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// assertUsageError checks a command's outcome as a usage error: exit 2,
// nothing on stdout, and stderr naming each of want.
func assertUsageError(t *testing.T, stdout, stderr string, code int, want ...string) {
	t.Helper()
	if code != 2 {
		t.Errorf("exit: got %d, want 2", code)
	}
	if stdout != "" {
		t.Errorf("stdout: got %q, want nothing", stdout)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not contain %q:\n%s", w, stderr)
		}
	}
}

// keygenForTest runs keygen for alg into a fresh directory and returns it.
func keygenForTest(t *testing.T, alg string, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	args := append([]string{"keygen", "--alg", alg, "--out", dir}, extra...)
	if _, stderr, code := runForTest(t, args...); code != 0 {
		t.Fatalf("jwtauthz %s: exit %d, stderr:\n%s", strings.Join(args, " "), code, stderr)
	}
	return dir
}

// readPublicPEM parses dir/public.pem.
func readPublicPEM(t *testing.T, dir string) crypto.PublicKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "public.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("public.pem: want exactly one PUBLIC KEY block, got:\n%s", data)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatalf("public.pem: %v", err)
	}
	return pub
}

// readJWKS parses dir/jwks.json with jwkset and checks it holds one key.
func readJWKS(t *testing.T, dir string) (jwkset.JWK, json.RawMessage) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatalf("jwks.json: %v\n%s", err, data)
	}
	if len(raw.Keys) != 1 {
		t.Fatalf("jwks.json: got %d keys, want 1", len(raw.Keys))
	}
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw.Keys[0], &m); err != nil {
		t.Fatal(err)
	}
	j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		t.Fatalf("jwks.json key: %v\n%s", err, raw.Keys[0])
	}
	return j, raw.Keys[0]
}

// thumbprintFromJWK computes the RFC 7638 signing.Thumbprint from the JWK members
// themselves, independently of signing.Thumbprint(): encoding/json sorts map keys
// and adds no whitespace, which is the canonical form.
func thumbprintFromJWK(t *testing.T, m jwkset.JWKMarshal) string {
	t.Helper()
	members := map[string]string{"kty": string(m.KTY)}
	switch m.KTY {
	case jwkset.KtyRSA:
		members["n"], members["e"] = m.N, m.E
	case jwkset.KtyEC:
		members["crv"], members["x"], members["y"] = string(m.CRV), m.X, m.Y
	case jwkset.KtyOKP:
		members["crv"], members["x"] = string(m.CRV), m.X
	default:
		t.Fatalf("unexpected kty %q", m.KTY)
	}
	canonical, err := json.Marshal(members)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(canonical)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestKeygen(t *testing.T) {
	tests := []struct {
		alg     string
		args    []string
		rsaBits int            // RSA modulus size wanted, 0 for other keys
		curve   elliptic.Curve // EC curve wanted
		crv     string         // JWK crv wanted
		kty     jwkset.KTY
	}{
		{alg: "RS256", rsaBits: 2048, kty: jwkset.KtyRSA},
		{alg: "RS384", rsaBits: 3072, kty: jwkset.KtyRSA},
		{alg: "RS512", rsaBits: 4096, kty: jwkset.KtyRSA},
		{alg: "RS512", args: []string{"--bits", "2048"}, rsaBits: 2048, kty: jwkset.KtyRSA},
		{alg: "PS256", rsaBits: 2048, kty: jwkset.KtyRSA},
		{alg: "PS384", rsaBits: 3072, kty: jwkset.KtyRSA},
		{alg: "PS512", rsaBits: 4096, kty: jwkset.KtyRSA},
		{alg: "ES256", curve: elliptic.P256(), crv: "P-256", kty: jwkset.KtyEC},
		{alg: "ES384", curve: elliptic.P384(), crv: "P-384", kty: jwkset.KtyEC},
		{alg: "ES512", curve: elliptic.P521(), crv: "P-521", kty: jwkset.KtyEC},
		{alg: "EdDSA", crv: "Ed25519", kty: jwkset.KtyOKP},
	}
	for _, tt := range tests {
		t.Run(strings.Join(append([]string{tt.alg}, tt.args...), "_"), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "new", "keys")
			args := append([]string{"keygen", "--alg", tt.alg, "--out", dir}, tt.args...)
			stdout, stderr, code := runForTest(t, args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}

			for name, want := range map[string]fs.FileMode{
				"":            0o700,
				"private.pem": 0o600,
				"public.pem":  0o644,
				"jwks.json":   0o644,
			} {
				if got := fileMode(t, filepath.Join(dir, name)); got != want {
					t.Errorf("mode of %q: got %v, want %v", name, got, want)
				}
			}

			priv, err := signing.LoadPrivateKey(filepath.Join(dir, "private.pem"))
			if err != nil {
				t.Fatal(err)
			}
			privPEM, _ := os.ReadFile(filepath.Join(dir, "private.pem"))
			if !bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----\n")) {
				t.Errorf("private.pem is not PKCS#8:\n%.40s", privPEM)
			}
			pub := readPublicPEM(t, dir)
			if !priv.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatal("public.pem does not hold the public half of private.pem")
			}
			switch k := pub.(type) {
			case *rsa.PublicKey:
				if got := k.N.BitLen(); got != tt.rsaBits {
					t.Errorf("RSA modulus: got %d bits, want %d", got, tt.rsaBits)
				}
			case *ecdsa.PublicKey:
				if k.Curve != tt.curve {
					t.Errorf("curve: got %s, want %s", k.Curve.Params().Name, tt.curve.Params().Name)
				}
			case ed25519.PublicKey:
				if tt.kty != jwkset.KtyOKP {
					t.Errorf("got an Ed25519 key for %s", tt.alg)
				}
			default:
				t.Fatalf("public.pem: unexpected key type %T", pub)
			}

			j, raw := readJWKS(t, dir)
			m := j.Marshal()
			if m.KTY != tt.kty || m.USE != jwkset.UseSig || string(m.ALG) != tt.alg || string(m.CRV) != tt.crv {
				t.Errorf("JWK kty, use, alg, crv: got %q %q %q %q, want %q %q %q %q",
					m.KTY, m.USE, m.ALG, m.CRV, tt.kty, jwkset.UseSig, tt.alg, tt.crv)
			}
			if m.D != "" || m.P != "" || m.K != "" {
				t.Errorf("jwks.json leaks private key material:\n%s", raw)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(j.Key()) {
				t.Errorf("jwks.json key %T does not equal public.pem's key", j.Key())
			}
			if bytes.ContainsRune(raw, '=') {
				t.Errorf("jwks.json has base64 padding:\n%s", raw)
			}
			if tt.curve != nil {
				size := (tt.curve.Params().BitSize + 7) / 8
				for name, v := range map[string]string{"x": m.X, "y": m.Y} {
					b, err := base64.RawURLEncoding.DecodeString(v)
					if err != nil || len(b) != size {
						t.Errorf("JWK %s: got %d bytes (err %v), want %d (left-padded)", name, len(b), err, size)
					}
				}
			}

			wantKID := thumbprintFromJWK(t, m)
			if m.KID != wantKID {
				t.Errorf("JWK kid: got %q, want signing.Thumbprint %q", m.KID, wantKID)
			}
			if got, err := signing.Thumbprint(pub); err != nil || got != wantKID {
				t.Errorf("signing.Thumbprint(public.pem): got %q, %v; want %q", got, err, wantKID)
			}
			wantOut := "private key: " + filepath.Join(dir, "private.pem") + "\n" +
				"public key:  " + filepath.Join(dir, "public.pem") + "\n" +
				"JWK Set:     " + filepath.Join(dir, "jwks.json") + "\n" +
				"kid:         " + wantKID + "\n"
			if stdout != wantOut {
				t.Errorf("stdout:\ngot:\n%s\nwant:\n%s", stdout, wantOut)
			}
		})
	}
}

// TestKeygenECPadding pins the left-padding of EC coordinates (RFC 7518
// section 6.2.1.2). A random key has a short x only once in 256 tries, so
// search the multiples of the generator for one.
func TestKeygenECPadding(t *testing.T) {
	curve := elliptic.P256()
	params := curve.Params()
	for k := int64(1); k < 5000; k++ {
		x, y := curve.ScalarBaseMult(big.NewInt(k).Bytes())
		if x.BitLen() > params.BitSize-8 {
			continue
		}
		pub := &ecdsa.PublicKey{Curve: curve, X: x, Y: y}
		j, err := signing.PublicJWK(pub)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := base64.RawURLEncoding.DecodeString(j.X)
		if len(b) != 32 || b[0] != 0 {
			t.Fatalf("x of %d·G: got %d bytes starting %#x, want 32 starting 0", k, len(b), b[0])
		}
		return
	}
	t.Skip("no small multiple of G with a short x found")
}

// TestKeygenThumbprintVectors checks signing.Thumbprint against the examples
// published in RFC 7638 section 3.1 and RFC 8037 appendix A.3.
func TestKeygenThumbprintVectors(t *testing.T) {
	tests := []struct {
		name string
		pub  func(t *testing.T) crypto.PublicKey
		want string
	}{
		{
			name: "RFC7638_RSA",
			pub: func(t *testing.T) crypto.PublicKey {
				n := mustB64(t, "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
				return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
			},
			want: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
		},
		{
			name: "RFC8037_Ed25519",
			pub: func(t *testing.T) crypto.PublicKey {
				return ed25519.PublicKey(mustB64(t, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"))
			},
			want: "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signing.Thumbprint(tt.pub(t))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("signing.Thumbprint: got %q, want %q", got, tt.want)
			}
		})
	}
}

func mustB64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKeygenRefusesOverwrite(t *testing.T) {
	for _, existing := range []string{"private.pem", "public.pem", "jwks.json"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, existing)
			const old = "keep me\n"
			if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := runForTest(t, "keygen", "--alg", "EdDSA", "--out", dir)
			assertUsageError(t, stdout, stderr, code, path, "refusing to overwrite")
			if got, _ := os.ReadFile(path); string(got) != old {
				t.Errorf("%s was changed to %q", existing, got)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want only %s", len(entries), existing)
			}
		})
	}
}

func TestKeygenUsageErrors(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStderr []string
	}{
		{"unknown alg", []string{"--alg", "HS256"}, []string{`"HS256"`, "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA"}},
		{"lowercase alg", []string{"--alg", "rs256"}, []string{`"rs256"`, "valid: RS256"}},
		{"missing alg", nil, []string{"--alg is required", "EdDSA"}},
		{"missing out", []string{"--alg", "ES256", "--out", ""}, []string{"--out is required"}},
		{"bits for EC", []string{"--alg", "ES256", "--bits", "2048"}, []string{"only to RSA", "ES256"}},
		{"bits too small", []string{"--alg", "RS256", "--bits", "1024"}, []string{"1024", "2048"}},
		{"extra argument", []string{"--alg", "ES256", "extra"}, []string{"unexpected arguments", "extra"}},
		{"unknown flag", []string{"--alg", "ES256", "--nope"}, []string{"-nope", "Usage: jwtauthz keygen"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			args := append([]string{"keygen", "--out", dir}, tt.args...)
			stdout, stderr, code := runForTest(t, args...)
			assertUsageError(t, stdout, stderr, code, tt.wantStderr...)
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("%s was created", dir)
			}
		})
	}
}

func TestKeygenWriteKeyFilesRejectsMismatch(t *testing.T) {
	key, err := signing.Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "keys")
	_, err = signing.WriteKeyFiles(dir, "ES384", key)
	if err == nil || !strings.Contains(err.Error(), "ES384") || !strings.Contains(err.Error(), "P-256") {
		t.Errorf("signing.WriteKeyFiles(ES384, P-256 key): got %v, want an error naming both", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("%s was created", dir)
	}
}
