package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
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
		{"kid whose key does not fit alg: never another kid's key", "ec", "RS256", nil},
		{"kid with a JWK alg that differs", "b", "RS256", nil},
		{"kid with a JWK alg that matches", "b", "RS512", []string{"b"}},
		{"unknown kid falls back to kid-less keys of the right type", "zzz", "RS256", []string{"rsa-nokid"}},
		{"no kid: kid-less keys only, never keyed ones", "", "RS256", []string{"rsa-nokid"}},
		{"no kid, EdDSA", "", "EdDSA", []string{"ed-nokid"}},
		{"no kid, HS256: only the secret", "", "HS256", []string{"hmac"}},
		{"ES256 token without kid: the kid-carrying EC key is not tried", "", "ES256", nil},
		{"ES384 never fits a P-256 key", "ec", "ES384", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, k := range set.Candidates(nil, tc.kid, tc.alg) {
				got = append(got, name(k))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Candidates(%q, %q) = %v, want %v", tc.kid, tc.alg, got, tc.want)
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
	cert := func() []byte {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkixName("idp"), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, edPub, edPriv)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
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
		{"RSA under 2048 bits is refused", pkix(&small.PublicKey), nil, "too small"},
		{"no PEM at all", []byte("hello"), nil, "no PEM public key"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, string(rune('a'+i))+".pem")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			ks, err := ReadPEMFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want one naming %s and saying %q", err, path, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
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
