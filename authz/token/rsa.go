package token

import (
	"bytes"
	"crypto"
	"crypto/fips140"
	"crypto/rsa"
	"io"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// RSASSA-PKCS1-v1_5 (RS256, RS384, RS512) verification for moduli over
// 2048 bits, with math/big.
//
// crypto/rsa rebuilds its form of the public key on every verification
// (the Montgomery constants of the modulus: about a third of the work for
// 4096 bits), and above 2048 bits its multiplication runs without its
// assembly. math/big raises the signature to the small public exponent
// with assembly at every size: a 4096-bit verification costs it about 107
// µs against crypto/rsa's 265 µs, 3072 bits 66 µs against 155 µs. At 2048
// bits crypto/rsa is the faster (31 µs against 36 µs) and keeps the job,
// as it does in FIPS 140 mode. Only public values are involved, so
// math/big's variable time reveals nothing.
//
// The result is checked as crypto/rsa checks it: the signature is exactly
// as long as the modulus and below it, and the encoded message is compared
// whole with the one expected (RFC 8017 §8.2.2), never parsed.

// fastRSABits is the modulus size above which verifyPKCS1v15 is used.
const fastRSABits = 2048

// digestInfo holds the DER prefix of each hash's DigestInfo (RFC 8017
// §9.2 note 1), as crypto/rsa has them.
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// fastRSA returns the hash of m when its signatures with key are checked
// by verifyPKCS1v15.
func fastRSA(m jwt.SigningMethod, key any) (crypto.Hash, *rsa.PublicKey, bool) {
	rm, ok := m.(*jwt.SigningMethodRSA)
	if !ok {
		return 0, nil, false
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok || pub.N == nil || pub.N.BitLen() <= fastRSABits || fips140.Enabled() {
		return 0, nil, false
	}
	if _, ok := digestInfo[rm.Hash]; !ok {
		return 0, nil, false
	}
	return rm.Hash, pub, true
}

// verifyPKCS1v15 reports whether sig is an RSASSA-PKCS1-v1_5 signature of
// signing with hash h under pub, as rsa.VerifyPKCS1v15 decides it.
func verifyPKCS1v15(pub *rsa.PublicKey, h crypto.Hash, signing string, sig []byte) bool {
	// crypto/rsa's checks of the key: an odd modulus, an odd exponent
	// from 3 to 2³¹-1.
	if pub.N.Bit(0) == 0 || pub.E < 2 || pub.E&1 == 0 || pub.E > 1<<31-1 {
		return false
	}
	k := (pub.N.BitLen() + 7) / 8
	if len(sig) != k {
		return false
	}
	s := new(big.Int).SetBytes(sig)
	if s.Cmp(pub.N) >= 0 {
		return false
	}
	em := s.Exp(s, big.NewInt(int64(pub.E)), pub.N).FillBytes(make([]byte, k))

	prefix := digestInfo[h]
	hasher := h.New()
	io.WriteString(hasher, signing)
	hashed := hasher.Sum(nil)
	// EM = 0x00 || 0x01 || PS (0xff, at least 8) || 0x00 || DigestInfo || hash
	t := len(prefix) + len(hashed)
	if k < t+11 {
		return false
	}
	ok := em[0] == 0 && em[1] == 1 && em[k-t-1] == 0
	for _, b := range em[2 : k-t-1] {
		ok = ok && b == 0xff
	}
	return ok && bytes.Equal(em[k-t:k-len(hashed)], prefix) && bytes.Equal(em[k-len(hashed):], hashed)
}
