// Package keys holds a provider's verification keys: PEM public keys and
// X.509 certificates, JWK Sets from a file or a URL, and HMAC secrets.
//
// A Set is an immutable snapshot; sources swap in a new Set when their keys
// change, so the Check path reads keys without locks.
package keys

import (
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

// Key is one verification key.
type Key struct {
	ID     string // the kid; "" for keys that carry none (PEM, certificates, HMAC)
	Alg    string // the JWK's alg member; "" when it names none
	Public any    // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (HMAC)
}

// Set is an immutable snapshot of a provider's keys.
type Set struct {
	byKID map[string][]Key
	noKID []Key
	// Generation changes whenever the set's contents change, so a cache of
	// verified tokens can drop entries whose key may have left.
	Generation uint64
}

// NewSet builds a set from keys.
func NewSet(keys []Key, generation uint64) *Set {
	s := &Set{byKID: make(map[string][]Key), Generation: generation}
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
	n := len(s.noKID)
	for _, ks := range s.byKID {
		n += len(ks)
	}
	return n
}

// HasKID reports whether some key carries kid.
func (s *Set) HasKID(kid string) bool {
	_, ok := s.byKID[kid]
	return ok
}

// Candidates appends to dst the keys that may verify a token with the given
// kid and alg: the keys with that kid when there are any, otherwise the keys
// without a kid. A key with another kid is never a candidate, and neither is
// a key whose type or declared alg does not fit alg.
func (s *Set) Candidates(dst []Key, kid, alg string) []Key {
	pool := s.noKID
	if kid != "" {
		if ks, ok := s.byKID[kid]; ok {
			pool = ks
		}
	}
	for _, k := range pool {
		if (k.Alg == "" || k.Alg == alg) && Fits(alg, k.Public) {
			dst = append(dst, k)
		}
	}
	return dst
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
