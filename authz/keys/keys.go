// Package keys holds a provider's verification keys: PEM public keys and
// X.509 certificates, JWK Sets from a file or a URL (given, or found by
// OpenID Connect Discovery), and HMAC secrets.
//
// A Set is an immutable snapshot; sources swap in a new Set when their keys
// change, so the Check path reads keys without locks.
package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"strings"
)

var (
	// ErrUnknownKID means no key of the set can verify the token: none has its
	// kid, and no key without a kid fits its algorithm.
	ErrUnknownKID = errors.New("no key for this token")
	// ErrUnavailable means the source has never loaded a key, so no token can
	// be verified at all.
	ErrUnavailable = errors.New("no verification keys loaded")
)

// MaxCandidates bounds the keys tried for one token. A set of 2,000 keys
// that share a kid (or a kid-less token before a large set) must not cost
// 2,000 signature checks per request.
const MaxCandidates = 8

// RSA key sizes accepted from every source. Under 2,048 bits is breakable;
// over 8,192 bits makes each signature check cost a denial of service.
const (
	MinRSABits = 2048
	MaxRSABits = 8192
)

// Key is one verification key.
type Key struct {
	ID     string // the kid; "" for keys that carry none (PEM, certificates, HMAC)
	Alg    string // the JWK's alg member; "" when it names none
	Public any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (HMAC)
}

// equal reports whether k and o are the same key with the same kid and alg.
func (k Key) equal(o Key) bool {
	if k.ID != o.ID || k.Alg != o.Alg {
		return false
	}
	if b, ok := k.Public.([]byte); ok {
		ob, ok := o.Public.([]byte)
		return ok && bytes.Equal(b, ob)
	}
	e, ok := k.Public.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(o.Public)
}

// Set is an immutable snapshot of a provider's keys.
type Set struct {
	all   []Key // in the order given
	byKID map[string][]Key
	noKID []Key
	// Generation changes whenever the set's contents change, so a cache of
	// verified tokens can drop entries whose key may have left.
	Generation uint64
}

// NewSet builds a set from keys.
func NewSet(keys []Key, generation uint64) *Set {
	s := &Set{all: keys, byKID: make(map[string][]Key), Generation: generation}
	for _, k := range keys {
		if k.ID == "" {
			s.noKID = append(s.noKID, k)
			continue
		}
		s.byKID[k.ID] = append(s.byKID[k.ID], k)
	}
	return s
}

// Len returns the number of keys in the set.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.all)
}

// HasKID reports whether some key carries kid.
func (s *Set) HasKID(kid string) bool {
	if s == nil {
		return false
	}
	_, ok := s.byKID[kid]
	return ok
}

// sameKeys reports whether s holds exactly keys, in that order.
func (s *Set) sameKeys(keys []Key) bool {
	if s == nil || len(s.all) != len(keys) {
		return false
	}
	for i := range keys {
		if !s.all[i].equal(keys[i]) {
			return false
		}
	}
	return true
}

// Candidates appends to dst the keys that may verify a token with the given
// kid and alg, as Envoy's jwt_authn selects them: a key is skipped only when
// both it and the token carry a kid and the two differ. So a token with a
// kid gets the keys with that kid, or the keys without a kid when none has
// it; a token without a kid gets every key, those without a kid first. A key
// whose type or JWK alg does not fit alg is never a candidate.
//
// At most MaxCandidates keys are appended; omitted is how many more fitting
// keys were left out.
func (s *Set) Candidates(dst []Key, kid, alg string) (cands []Key, omitted int) {
	if s == nil {
		return dst, 0
	}
	n := 0
	add := func(k Key) {
		if (k.Alg != "" && k.Alg != alg) || !Fits(alg, k.Public) {
			return
		}
		if n == MaxCandidates {
			omitted++
			return
		}
		dst = append(dst, k)
		n++
	}
	if kid != "" {
		pool, ok := s.byKID[kid]
		if !ok {
			pool = s.noKID
		}
		for _, k := range pool {
			add(k)
		}
		return dst, omitted
	}
	for _, k := range s.noKID {
		add(k)
	}
	for _, k := range s.all {
		if k.ID != "" {
			add(k)
		}
	}
	return dst, omitted
}

// Fits reports whether key can verify signatures made with alg.
func Fits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case []byte:
		return strings.HasPrefix(alg, "HS")
	}
	return false
}

// FitsAny reports whether key fits at least one of algs.
func FitsAny(algs []string, key any) bool {
	for _, a := range algs {
		if Fits(a, key) {
			return true
		}
	}
	return false
}

// Describe names a key's type for error messages, e.g. "EC P-256".
func Describe(key any) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case []byte:
		return "HMAC secret"
	}
	return "unsupported key"
}
