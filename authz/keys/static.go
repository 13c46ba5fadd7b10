package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/MicahParks/jwkset"
	"golang.org/x/time/rate"
)

// Static is a key source that never changes after it is built: PEM files,
// a JWK Set file, an HMAC secret.
type Static struct {
	set *Set
	cut *cutLog
}

// NewStatic returns a source that always answers with set. It logs
// nothing; see WithLogger.
func NewStatic(set *Set) *Static { return &Static{set: set, cut: newCutLog(nil)} }

// WithLogger returns a copy of s that logs to logger when a token has more
// candidate keys than MaxCandidates.
func (s *Static) WithLogger(logger *slog.Logger) *Static {
	return &Static{set: s.set, cut: newCutLog(logger)}
}

// Current returns the set, or nil when it is empty.
func (s *Static) Current() *Set {
	if s.set.Len() == 0 {
		return nil
	}
	return s.set
}

// Lookup returns the candidate keys for kid and alg.
func (s *Static) Lookup(_ context.Context, dst []Key, kid, alg string) ([]Key, uint64, error) {
	return lookup(s.Current(), s.cut, dst, kid, alg)
}

func lookup(set *Set, cut *cutLog, dst []Key, kid, alg string) ([]Key, uint64, error) {
	if set == nil {
		return dst, 0, ErrUnavailable
	}
	n := len(dst)
	dst, omitted := set.Candidates(dst, kid, alg)
	if omitted > 0 {
		cut.log(kid, alg, len(dst)-n, omitted)
	}
	if len(dst) == n {
		return dst, set.Generation, ErrUnknownKID
	}
	return dst, set.Generation, nil
}

// cutLog reports, at most once a minute, that a token had more candidate
// keys than are tried: a set that publishes many keys under one kid, or a
// kid-less token before a large set. Often enough for an operator to see
// it, never once per request.
type cutLog struct {
	logger *slog.Logger
	every  rate.Sometimes
}

func newCutLog(logger *slog.Logger) *cutLog {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &cutLog{logger: logger, every: rate.Sometimes{First: 1, Interval: time.Minute}}
}

func (c *cutLog) log(kid, alg string, tried, omitted int) {
	c.every.Do(func() {
		// The kid comes from the token: quoted and bounded, never the token.
		c.logger.Warn("more keys fit this token than are tried; the rest were left out",
			"kid", fmt.Sprintf("%.64q", kid), "alg", fmt.Sprintf("%.16q", alg), "tried", tried, "left_out", omitted)
	})
}

// ReadPEMFile reads every public key and certificate in a PEM file. Blocks
// of other types (a private key, say) are an error, so a misplaced file is
// noticed at start-up.
func ReadPEMFile(path string) ([]Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Key
	rest := data
	for i := 0; ; i++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		pub, err := parsePEMBlock(block)
		if err != nil {
			return nil, fmt.Errorf("%s: PEM block %d: %w", path, i, err)
		}
		out = append(out, Key{Public: pub})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM public key or certificate found", path)
	}
	return out, nil
}

func parsePEMBlock(b *pem.Block) (any, error) {
	var pub any
	var err error
	switch b.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(b.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(b.Bytes)
		if err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key or certificate", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse PEM block %q: %w", b.Type, err)
	}
	return checkPublic(pub)
}

// checkPublic accepts only the key types jwtauthz can verify with.
func checkPublic(pub any) (any, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch bits := k.N.BitLen(); {
		case bits < MinRSABits:
			return nil, fmt.Errorf("RSA key of %d bits is too small (minimum %d)", bits, MinRSABits)
		case bits > MaxRSABits:
			return nil, fmt.Errorf("RSA key of %d bits is too large (maximum %d)", bits, MaxRSABits)
		}
		return k, nil
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", pub)
}

// ReadHMACFile reads a shared secret. One trailing newline is dropped, since
// editors and "echo" add it. A secret shorter than 32 bytes is refused
// (RFC 7518 §3.2 asks for at least the hash size).
func ReadHMACFile(path string) (Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Key{}, err
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) < 32 {
		return Key{}, fmt.Errorf("%s: HMAC secret of %d bytes is too short (minimum 32)", path, len(data))
	}
	return Key{Public: data}, nil
}

// ReadJWKSFile reads a local JWK Set. Keys it cannot use are skipped and
// reported in skipped.
func ReadJWKSFile(path string) (keys []Key, skipped []error, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	keys, skipped, err = ParseJWKS(data)
	if err != nil {
		return nil, skipped, fmt.Errorf("%s: %w", path, err)
	}
	return keys, skipped, nil
}

// ParseJWKS parses a JWK Set document. One malformed or unsupported key does
// not discard the others; it is reported in skipped. A set with no usable
// key is an error.
func ParseJWKS(data []byte) (keys []Key, skipped []error, err error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("decode JWK Set: %w", err)
	}
	for i, raw := range doc.Keys {
		k, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, errors.Join(append([]error{errors.New("JWK Set has no usable key")}, skipped...)...)
	}
	return keys, skipped, nil
}

func parseJWK(raw json.RawMessage) (Key, error) {
	var m jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &m); err != nil {
		return Key{}, fmt.Errorf("decode JWK: %w", err)
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return Key{}, fmt.Errorf("kid %q: use %q is not \"sig\"", m.KID, m.USE)
	}
	if m.KTY == jwkset.KtyOct {
		return Key{}, fmt.Errorf("kid %q: symmetric keys are read only from hmac_secret_file", m.KID)
	}
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return Key{}, fmt.Errorf("kid %q: %w", m.KID, err)
	}
	pub := jwk.Key()
	if p, ok := pub.(interface{ Public() crypto.PublicKey }); ok {
		pub = p.Public()
	}
	if pub, err = checkPublic(pub); err != nil {
		return Key{}, fmt.Errorf("kid %q: %w", m.KID, err)
	}
	return Key{ID: m.KID, Alg: m.ALG.String(), Public: pub}, nil
}
