package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCandidates(t *testing.T) {
	rsaA, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaB, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaNoKID, _ := rsa.GenerateKey(rand.Reader, 2048)
	ec256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	set := NewSet([]Key{
		{ID: "a", Public: &rsaA.PublicKey},
		{ID: "b", Alg: "RS512", Public: &rsaB.PublicKey},
		{ID: "ec", Public: &ec256.PublicKey},
		{Public: &rsaNoKID.PublicKey},
		{Public: edPub},
		{Public: []byte(strings.Repeat("s", 32))},
	}, 1)
	name := func(k Key) string {
		switch k.Public {
		case &rsaA.PublicKey:
			return "a"
		case &rsaB.PublicKey:
			return "b"
		case &ec256.PublicKey:
			return "ec"
		case &rsaNoKID.PublicKey:
			return "rsa-nokid"
		}
		switch k.Public.(type) {
		case ed25519.PublicKey:
			return "ed-nokid"
		case []byte:
			return "hmac"
		}
		return "?"
	}
	tests := []struct {
		name, kid, alg string
		want           []string
	}{
		{"kid selects its key", "a", "RS256", []string{"a"}},
		{"kid whose key does not fit alg: never another kid's key, nor a kid-less one", "ec", "RS256", nil},
		{"kid with a JWK alg that differs", "b", "RS256", nil},
		{"kid with a JWK alg that matches", "b", "RS512", []string{"b"}},
		{"unknown kid falls back to kid-less keys of the right type", "zzz", "RS256", []string{"rsa-nokid"}},
		{"no kid: every key that fits, kid-less ones first", "", "RS256", []string{"rsa-nokid", "a"}},
		{"no kid, RS512: the key whose JWK alg is RS512 too", "", "RS512", []string{"rsa-nokid", "a", "b"}},
		{"no kid, EdDSA", "", "EdDSA", []string{"ed-nokid"}},
		{"no kid, HS256: only the secret", "", "HS256", []string{"hmac"}},
		{"no kid, ES256: the kid-carrying EC key", "", "ES256", []string{"ec"}},
		{"ES384 never fits a P-256 key", "ec", "ES384", nil},
		{"no kid, ES384: nothing fits", "", "ES384", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			cands, omitted := set.Candidates(nil, tc.kid, tc.alg)
			for _, k := range cands {
				got = append(got, name(k))
			}
			if !slices.Equal(got, tc.want) || omitted != 0 {
				t.Errorf("Candidates(%q, %q) = %v, %d left out; want %v, 0", tc.kid, tc.alg, got, omitted, tc.want)
			}
		})
	}
}

// TestCandidatesBounded: however many keys fit a token, at most
// MaxCandidates are tried, and the rest are counted.
func TestCandidatesBounded(t *testing.T) {
	k, _ := rsa.GenerateKey(rand.Reader, 2048)
	var sameKID, kidded []Key
	for i := range 2000 {
		sameKID = append(sameKID, Key{ID: "one", Public: &k.PublicKey})
		if i < 20 {
			kidded = append(kidded, Key{ID: fmt.Sprint("k", i), Public: &k.PublicKey})
		}
	}
	for _, tc := range []struct {
		name         string
		keys         []Key
		kid          string
		wantOmitted  int
		wantFirstKID string
	}{
		{"2,000 keys sharing the token's kid", sameKID, "one", 2000 - MaxCandidates, "one"},
		{"a kid-less token before 20 keys with kids", kidded, "", 20 - MaxCandidates, "k0"},
		{"a kid-less token before 12 kid-less keys and 20 with kids", append(slices.Repeat([]Key{{Public: &k.PublicKey}}, 12), kidded...), "", 32 - MaxCandidates, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, omitted := NewSet(tc.keys, 1).Candidates(nil, tc.kid, "RS256")
			if len(got) != MaxCandidates || omitted != tc.wantOmitted || got[0].ID != tc.wantFirstKID {
				t.Errorf("Candidates = %d keys (first kid %q), %d left out; want %d (first kid %q), %d",
					len(got), got[0].ID, omitted, MaxCandidates, tc.wantFirstKID, tc.wantOmitted)
			}
		})
	}
}

func TestReadPEMFile(t *testing.T) {
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	pkix := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	// A certificate for pub, signed by the Ed25519 key.
	certFor := func(pub any) []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkixName("idp"), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, edPriv)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	cert := func() []byte { return certFor(edPub) }
	huge := hugeRSAPublicKey(t)
	privDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	tests := []struct {
		name    string
		data    []byte
		want    []string
		wantErr string
	}{
		{"RSA PKIX", pkix(&rsaKey.PublicKey), []string{"RSA"}, ""},
		{"RSA PKCS1", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)}), []string{"RSA"}, ""},
		{"EC P-384 and Ed25519 certificate in one file", append(pkix(&ecKey.PublicKey), cert()...), []string{"EC P-384", "Ed25519"}, ""},
		{"private key is refused", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), nil, "not a public key"},
		{"RSA under 2048 bits is refused", pkix(&small.PublicKey), nil, "PEM block 0: RSA key of 1024 bits is too small (minimum 2048)"},
		{"RSA over 8192 bits is refused", pkix(huge), nil, "PEM block 0: RSA key of 16384 bits is too large (maximum 8192)"},
		{"a certificate of a 1024-bit RSA key, second in the file, is refused", append(pkix(&rsaKey.PublicKey), certFor(&small.PublicKey)...), nil, "PEM block 1: RSA key of 1024 bits is too small"},
		{"a certificate of a 16384-bit RSA key is refused", certFor(huge), nil, "PEM block 0: RSA key of 16384 bits is too large"},
		{"RSA PKCS1 of 16384 bits is refused", pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(huge)}), nil, "too large"},
		{"no PEM at all", []byte("hello"), nil, "no PEM public key"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, string(rune('a'+i))+".pem")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			ks, err := ReadPEMFile(path)
			if fileErr(t, err, path, tc.wantErr) {
				return
			}
			var got []string
			for _, k := range ks {
				got = append(got, Describe(k.Public))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("keys = %v, want %v", got, tc.want)
			}
		})
	}
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }

// hugeRSAPublicKey returns an RSA public key with a 16,384-bit modulus.
// Generating a real one takes minutes; a random odd modulus of that size is
// all a size check reads, and nothing is ever signed with it.
func hugeRSAPublicKey(t *testing.T) *rsa.PublicKey {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 16383))
	if err != nil {
		t.Fatal(err)
	}
	n.SetBit(n, 16383, 1).SetBit(n, 0, 1)
	return &rsa.PublicKey{N: n, E: 65537}
}

func rsaJWK(kid string, pub *rsa.PublicKey) string {
	b64 := base64.RawURLEncoding.EncodeToString
	return fmt.Sprintf(`{"kty":"RSA","kid":%q,"use":"sig","n":%q,"e":%q}`, kid, b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes()))
}

// TestRSASizeBoundsInJWKSets: a JWK Set's RSA key under 2048 or over 8192
// bits is refused, naming its kid; beside a good key it is skipped.
func TestRSASizeBoundsInJWKSets(t *testing.T) {
	good, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	huge := hugeRSAPublicKey(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		keys     []string
		wantErr  string // from ReadJWKSFile; "" when it loads
		wantKIDs []string
		skipped  string
	}{
		{"only a 1024-bit key", []string{rsaJWK("weak", &small.PublicKey)}, `kid "weak": RSA key of 1024 bits is too small (minimum 2048)`, nil, ""},
		{"only a 16384-bit key", []string{rsaJWK("huge", huge)}, `kid "huge": RSA key of 16384 bits is too large (maximum 8192)`, nil, ""},
		{"weak and huge beside a good key", []string{rsaJWK("weak", &small.PublicKey), rsaJWK("good", &good.PublicKey), rsaJWK("huge", huge)}, "", []string{"good"},
			`key 0: kid "weak": RSA key of 1024 bits is too small (minimum 2048); key 2: kid "huge": RSA key of 16384 bits is too large (maximum 8192)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "jwks.json")
			if err := os.WriteFile(path, []byte(`{"keys":[`+strings.Join(tc.keys, ",")+`]}`), 0o600); err != nil {
				t.Fatal(err)
			}
			ks, skipped, err := ReadJWKSFile(path)
			if fileErr(t, err, path, tc.wantErr) {
				return
			}
			var kids, why []string
			for _, k := range ks {
				kids = append(kids, k.ID)
			}
			for _, s := range skipped {
				why = append(why, s.Error())
			}
			if !slices.Equal(kids, tc.wantKIDs) || strings.Join(why, "; ") != tc.skipped {
				t.Errorf("keys %v, skipped %q; want %v, %q", kids, why, tc.wantKIDs, tc.skipped)
			}
		})
	}
}

func TestReadHMACFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, data string
		wantLen    int
		wantErr    bool
	}{
		{"32 bytes and a newline", strings.Repeat("k", 32) + "\n", 32, false},
		{"exactly as written", strings.Repeat("k", 40), 40, false},
		{"too short", "secret\n", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "secret")
			os.WriteFile(path, []byte(tc.data), 0o600)
			k, err := ReadHMACFile(path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if !tc.wantErr && len(k.Public.([]byte)) != tc.wantLen {
				t.Errorf("secret of %d bytes, want %d", len(k.Public.([]byte)), tc.wantLen)
			}
		})
	}
}

func TestParseJWKSSkipsWhatItCannotUse(t *testing.T) {
	doc := `{"keys":[
	  {"kty":"RSA","kid":"bad","n":"!!","e":"AQAB"},
	  {"kty":"oct","kid":"sym","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
	  {"kty":"EC","kid":"enc","use":"enc","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
	  {"kty":"EC","kid":"good","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
	]}`
	ks, skipped, err := ParseJWKS([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 1 || ks[0].ID != "good" {
		t.Errorf("keys = %v, want only kid good", ks)
	}
	if len(skipped) != 3 {
		t.Errorf("skipped = %v, want 3 (malformed, symmetric, use enc)", skipped)
	}
}

// fileErr fails t unless err is what reading path should give: nil when
// want is "", else an error naming path and saying want. It reports whether
// an error was wanted (and the case is over).
func fileErr(t *testing.T, err error, path, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatal(err)
		}
		return false
	}
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want one naming %s and saying %q", err, path, want)
	}
	return true
}
