// Package signing makes what an identity provider would: private keys
// for the JWS algorithms, their public halves as PEM and JWK Sets with
// RFC 7638 thumbprints as kids, and signed JWTs. The keygen, mint and demo
// commands use it, and so do the tests and benchmarks, which generate
// their keys at run time.
package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtauthz/jwtauthz/authz/keys"
)

// Names of the files keygen writes into its output directory.
const (
	PrivateKeyFile = "private.pem"
	PublicKeyFile  = "public.pem"
	JWKSFile       = "jwks.json"
)

// RSA modulus sizes: those jwtauthz accepts from a key source
// (keys.MinRSABits, keys.MaxRSABits; RFC 7518 §3.3 asks for at least 2048).
const (
	minRSABits = keys.MinRSABits
	maxRSABits = keys.MaxRSABits
)

// AsymmetricAlgs lists the JWS algorithms keygen can make keys for, in the
// order they are shown to users.
var AsymmetricAlgs = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// HMACAlgs are the symmetric algorithms mint signs with a shared secret.
var HMACAlgs = []string{"HS256", "HS384", "HS512"}

func IsHMAC(alg string) bool { return slices.Contains(HMACAlgs, alg) }

// defaultRSABits is the modulus size keygen uses when --bits is not given:
// the strength grows with the hash, as most identity providers do.
var defaultRSABits = map[string]int{
	"RS256": 2048, "PS256": 2048,
	"RS384": 3072, "PS384": 3072,
	"RS512": 4096, "PS512": 4096,
}

// ecCurves maps each ECDSA algorithm to the one curve RFC 7518 allows it.
var ecCurves = map[string]elliptic.Curve{
	"ES256": elliptic.P256(),
	"ES384": elliptic.P384(),
	"ES512": elliptic.P521(),
}

// errUnknownAlg is returned for an algorithm keygen or mint does not know.
func errUnknownAlg(alg string) error {
	return fmt.Errorf("unknown algorithm %q (valid: %s)", alg, strings.Join(AsymmetricAlgs, ", "))
}

// Generate returns a fresh private key for alg. rsaBits overrides the
// modulus size for RS* and PS*; 0 means the default for alg, and it must be 0
// for other algorithms.
func Generate(alg string, rsaBits int) (crypto.Signer, error) {
	if def, ok := defaultRSABits[alg]; ok {
		if rsaBits == 0 {
			rsaBits = def
		}
		if rsaBits < minRSABits || rsaBits > maxRSABits {
			return nil, fmt.Errorf("RSA key size %d bits: want %d to %d", rsaBits, minRSABits, maxRSABits)
		}
		return rsa.GenerateKey(rand.Reader, rsaBits)
	}
	if rsaBits != 0 {
		if _, ok := ecCurves[alg]; ok || alg == "EdDSA" {
			return nil, fmt.Errorf("a key size applies only to RSA algorithms, not %s", alg)
		}
	}
	if curve, ok := ecCurves[alg]; ok {
		return ecdsa.GenerateKey(curve, rand.Reader)
	}
	if alg == "EdDSA" {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, errUnknownAlg(alg)
}

// DefaultAlg is the algorithm a key signs with when none is asked for.
func DefaultAlg(key crypto.Signer) (string, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		// An RSA key carries no algorithm; RS512 is the default allowlist of
		// a provider, so keygen, mint and a default config work together.
		return "RS512", nil
	case *ecdsa.PrivateKey:
		for _, alg := range []string{"ES256", "ES384", "ES512"} {
			if ecCurves[alg] == k.Curve {
				return alg, nil
			}
		}
		return "", fmt.Errorf("EC key on curve %s: no JWS algorithm uses it", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return "EdDSA", nil
	}
	return "", fmt.Errorf("unsupported key type %T", key)
}

// Describe names a key for error messages, e.g. "RSA 2048-bit key".
func Describe(key crypto.Signer) string {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA %d-bit key", k.N.BitLen())
	case *ecdsa.PrivateKey:
		return fmt.Sprintf("EC %s key", k.Curve.Params().Name)
	case ed25519.PrivateKey:
		return "Ed25519 key"
	}
	return fmt.Sprintf("%T key", key)
}

// CheckAlg reports whether key can sign with the asymmetric alg.
func CheckAlg(alg string, key crypto.Signer) error {
	fits := false
	switch k := key.(type) {
	case *rsa.PrivateKey:
		_, fits = defaultRSABits[alg]
	case *ecdsa.PrivateKey:
		fits = ecCurves[alg] != nil && ecCurves[alg] == k.Curve
	case ed25519.PrivateKey:
		fits = alg == "EdDSA"
	default:
		return fmt.Errorf("unsupported key type %T", key)
	}
	if fits {
		return nil
	}
	if IsHMAC(alg) {
		return fmt.Errorf("algorithm %s takes a shared secret, not an %s", alg, Describe(key))
	}
	if _, rsaAlg := defaultRSABits[alg]; !rsaAlg && ecCurves[alg] == nil && alg != "EdDSA" {
		return errUnknownAlg(alg)
	}
	return fmt.Errorf("algorithm %s does not fit an %s", alg, Describe(key))
}

// ErrNoPrivateKeyPEM means a file holds no PEM private key block at all.
var ErrNoPrivateKeyPEM = errors.New("no PEM private key found")

// LoadPrivateKey reads a PEM private key: PKCS#8 ("PRIVATE KEY"), PKCS#1
// ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY"). Other blocks before the
// key, such as the "EC PARAMETERS" openssl writes, are skipped.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	key, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return key, nil
}

// ParsePrivateKeyPEM parses what LoadPrivateKey reads from a file.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, ErrNoPrivateKeyPEM
		}
		if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("encrypted private keys are not supported; decrypt it first (openssl pkey)")
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		}
		return nil, fmt.Errorf("unsupported private key type %T (want RSA, EC or Ed25519)", key)
	}
}

// JWK is the public half of a key as a JSON Web Key (RFC 7517, 7518, 8037).
// Field order is the order written to jwks.json.
type JWK struct {
	KTY string `json:"kty"`
	KID string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	CRV string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// PublicJWK returns the public parameters of pub; kid, use and alg are left
// to the caller. A private key is accepted for its public half.
func PublicJWK(pub crypto.PublicKey) (JWK, error) {
	if s, ok := pub.(crypto.Signer); ok {
		pub = s.Public()
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E))
		return JWK{KTY: "RSA", N: base64.RawURLEncoding.EncodeToString(k.N.Bytes()), E: base64.RawURLEncoding.EncodeToString(e.Bytes())}, nil
	case *ecdsa.PublicKey:
		// Uncompressed SEC 1 point: 0x04 || X || Y, each coordinate already
		// left-padded to the curve size as RFC 7518 section 6.2.1.2 wants.
		point, err := k.Bytes()
		if err != nil {
			return JWK{}, fmt.Errorf("encode EC public key: %w", err)
		}
		size := (len(point) - 1) / 2
		return JWK{
			KTY: "EC",
			CRV: k.Curve.Params().Name,
			X:   base64.RawURLEncoding.EncodeToString(point[1 : 1+size]),
			Y:   base64.RawURLEncoding.EncodeToString(point[1+size:]),
		}, nil
	case ed25519.PublicKey:
		return JWK{KTY: "OKP", CRV: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k)}, nil
	}
	return JWK{}, fmt.Errorf("unsupported public key type %T", pub)
}

// Thumbprint returns the RFC 7638 JWK Thumbprint of pub: base64url (no
// padding) of the SHA-256 of the required members in lexicographic order.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := PublicJWK(pub)
	if err != nil {
		return "", err
	}
	// The values are base64url or fixed names, so no JSON escaping is needed
	// and the canonical form can be written directly.
	var canonical string
	switch j.KTY {
	case "RSA":
		canonical = `{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`
	case "EC":
		canonical = `{"crv":"` + j.CRV + `","kty":"EC","x":"` + j.X + `","y":"` + j.Y + `"}`
	case "OKP":
		canonical = `{"crv":"` + j.CRV + `","kty":"OKP","x":"` + j.X + `"}`
	}
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// WriteKeyFiles writes private.pem (PKCS#8, 0600), public.pem (PKIX, 0644)
// and jwks.json (one key, with kid, use and alg) into dir, creating dir with
// mode 0700 if needed. It refuses to overwrite any existing file and leaves
// nothing behind when it fails. It returns the key's kid, its RFC 7638
// Thumbprint.
func WriteKeyFiles(dir, alg string, key crypto.Signer) (kid string, err error) {
	if err := CheckAlg(alg, key); err != nil {
		return "", err
	}
	kid, err = Thumbprint(key.Public())
	if err != nil {
		return "", err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	j, err := PublicJWK(key.Public())
	if err != nil {
		return "", err
	}
	j.KID, j.Use, j.Alg = kid, "sig", alg
	set, err := json.MarshalIndent(struct {
		Keys []JWK `json:"keys"`
	}{[]JWK{j}}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode JWK Set: %w", err)
	}

	files := []struct {
		name string
		mode fs.FileMode
		data []byte
	}{
		{PrivateKeyFile, 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})},
		{PublicKeyFile, 0o644, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})},
		{JWKSFile, 0o644, append(set, '\n')},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create key directory: %w", err)
	}
	// Check all three first so that a refusal leaves the directory as it was.
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if _, err := os.Lstat(p); err == nil {
			return "", fmt.Errorf("%s already exists; refusing to overwrite it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("check %s: %w", p, err)
		}
	}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeNewFile(p, f.data, f.mode); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				written = append(written, p) // created, possibly partly written
			}
			return "", err
		}
		written = append(written, p)
	}
	return kid, nil
}

// writeNewFile creates path with exactly mode (whatever the umask) and data;
// it fails if path exists.
func writeNewFile(path string, data []byte, mode fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; refusing to overwrite it: %w", path, err)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// Options says what Mint puts in a token besides the username.
type Options struct {
	Alg, KID, Issuer string
	NoKID            bool // no kid header, not even the Thumbprint
	Audience         []string
	TTL              time.Duration
	Claims           map[string]any // extra claims, override the defaults
	Now              time.Time
}

// Mint returns a compact JWT for username signed with key: a
// crypto.Signer private key, or the shared secret as []byte for HS*. It holds
// username and sub (both username), iat (o.Now, or the current time when
// zero), exp (iat + o.TTL), iss and aud when set (aud is a string for one
// audience, an array for several), then o.Claims, which override all of
// these. An empty o.Alg is chosen from the key; an empty o.KID means the RFC
// 7638 Thumbprint of the public key, as keygen writes in jwks.json (no kid
// for a shared secret, whose Thumbprint would publish a hash of it).
func Mint(key any, username string, o Options) (string, error) {
	if username == "" {
		return "", errors.New("mint: empty username")
	}
	alg, kid := o.Alg, o.KID
	if alg != "" && !IsHMAC(alg) && !slices.Contains(AsymmetricAlgs, alg) {
		return "", fmt.Errorf("unknown algorithm %q (valid: %s, %s)", alg, strings.Join(AsymmetricAlgs, ", "), strings.Join(HMACAlgs, ", "))
	}
	var signingKey any
	switch k := key.(type) {
	case []byte:
		if alg == "" {
			return "", fmt.Errorf("a shared secret needs an explicit algorithm (%s)", strings.Join(HMACAlgs, ", "))
		}
		if !IsHMAC(alg) {
			return "", fmt.Errorf("algorithm %s does not fit a shared secret (use %s)", alg, strings.Join(HMACAlgs, ", "))
		}
		if len(k) == 0 {
			return "", errors.New("empty shared secret")
		}
		signingKey = k
	case crypto.Signer:
		if alg == "" {
			var err error
			if alg, err = DefaultAlg(k); err != nil {
				return "", err
			}
		}
		if err := CheckAlg(alg, k); err != nil {
			return "", err
		}
		if kid == "" && !o.NoKID {
			var err error
			if kid, err = Thumbprint(k.Public()); err != nil {
				return "", err
			}
		}
		signingKey = k
	default:
		return "", fmt.Errorf("unsupported signing key type %T", key)
	}
	method := jwt.GetSigningMethod(alg)
	if method == nil {
		return "", fmt.Errorf("unknown algorithm %q", alg)
	}

	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	claims := jwt.MapClaims{
		"username": username,
		"sub":      username,
		"iat":      now.Unix(),
		"exp":      now.Add(o.TTL).Unix(),
	}
	if o.Issuer != "" {
		claims["iss"] = o.Issuer
	}
	switch len(o.Audience) {
	case 0:
	case 1:
		claims["aud"] = o.Audience[0]
	default:
		claims["aud"] = append([]string(nil), o.Audience...)
	}
	for k, v := range o.Claims {
		claims[k] = v
	}

	var header map[string]any
	if kid != "" {
		header = map[string]any{"kid": kid}
	}
	signed, err := Sign(method, signingKey, claims, header)
	if err != nil {
		return "", fmt.Errorf("sign %s token: %w", alg, err)
	}
	return signed, nil
}

// Sign returns the compact JWT of claims signed with key and method; header
// members are added to alg and typ as given (and may override them). Tests
// use it for the tokens Mint will not make.
func Sign(method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) (string, error) {
	t := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		t.Header[k] = v
	}
	return t.SignedString(key)
}

// KeygenAlg is the alg that WriteKeyFiles (keygen) recorded for pub in the
// jwks.json beside keyPath, or "": keygen --alg PS256 writes an RSA key
// meant for PS256, not the RS512 an RSA key alone defaults to.
func KeygenAlg(keyPath string, pub crypto.PublicKey) string {
	data, err := os.ReadFile(filepath.Join(filepath.Dir(keyPath), JWKSFile))
	if err != nil {
		return ""
	}
	kid, err := Thumbprint(pub)
	if err != nil {
		return ""
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	if json.Unmarshal(data, &set) != nil {
		return ""
	}
	for _, k := range set.Keys {
		if k.KID == kid {
			return k.Alg
		}
	}
	return ""
}

// LoadHMACSecret reads a shared-secret file. Its raw bytes are the secret, as
// a provider's hmac_secret_file is read; a PEM private key there is a mistake.
func LoadHMACSecret(path string) ([]byte, error) {
	secret, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	if bytes.Contains(secret, []byte("-----BEGIN ")) && bytes.Contains(secret, []byte("PRIVATE KEY-----")) {
		return nil, fmt.Errorf("%s is a private key; HS* algorithms take a shared-secret file", path)
	}
	return secret, nil
}

// HMACMinBytes is the shortest key RFC 7518 section 3.2 allows for alg.
func HMACMinBytes(alg string) int {
	switch alg {
	case "HS384":
		return 48
	case "HS512":
		return 64
	}
	return 32
}
