package token

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/big"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// TestVerifyPKCS1v15 checks verifyPKCS1v15 against crypto/rsa: valid
// signatures of each hash, altered ones, signatures of the wrong length or
// not below the modulus, encoded messages with each part of their padding
// wrong (signed with the raw private key), and keys crypto/rsa refuses.
func TestVerifyPKCS1v15(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	pub := &key.PublicKey
	k := pub.Size()
	const signing = "eyJhbGciOiJSUzI1NiJ9.eyJ1c2VybmFtZSI6ImFsaWNlIn0"
	// raw signs a message representative directly: m^d mod n.
	raw := func(em []byte) []byte {
		m := new(big.Int).SetBytes(em)
		return new(big.Int).Exp(m, key.D, key.N).FillBytes(make([]byte, k))
	}
	digest := func(h crypto.Hash, msg string) []byte {
		hh := h.New()
		hh.Write([]byte(msg))
		return hh.Sum(nil)
	}
	// encoded builds EM for h, then lets alter change it before signing.
	encoded := func(h crypto.Hash, alter func(em []byte, t int)) []byte {
		hashed := digest(h, signing)
		t := len(digestInfo[h]) + len(hashed)
		em := make([]byte, k)
		em[1] = 1
		for i := 2; i < k-t-1; i++ {
			em[i] = 0xff
		}
		copy(em[k-t:], digestInfo[h])
		copy(em[k-len(hashed):], hashed)
		if alter != nil {
			alter(em, t)
		}
		return raw(em)
	}

	type tc struct {
		name string
		pub  *rsa.PublicKey
		h    crypto.Hash
		sig  []byte
	}
	var cases []tc
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		valid, err := rsa.SignPKCS1v15(rand.Reader, key, h, digest(h, signing))
		if err != nil {
			t.Fatal(err)
		}
		flipped := append([]byte(nil), valid...)
		flipped[k/2] ^= 1
		other, _ := rsa.SignPKCS1v15(rand.Reader, key, h, digest(h, signing+"x"))
		plusN := new(big.Int).Add(new(big.Int).SetBytes(valid), key.N).Bytes()
		cases = append(cases,
			tc{"valid", pub, h, valid},
			tc{"valid, built here", pub, h, encoded(h, nil)},
			tc{"a bit flipped", pub, h, flipped},
			tc{"another message", pub, h, other},
			tc{"a byte short", pub, h, valid[1:]},
			tc{"a zero byte longer", pub, h, append([]byte{0}, valid...)},
			tc{"plus the modulus", pub, h, plusN},
			tc{"the modulus", pub, h, key.N.FillBytes(make([]byte, k))},
			tc{"zero", pub, h, make([]byte, k)},
			tc{"one", pub, h, big.NewInt(1).FillBytes(make([]byte, k))},
			tc{"first byte 1", pub, h, encoded(h, func(em []byte, _ int) { em[0] = 1 })},
			tc{"block type 2", pub, h, encoded(h, func(em []byte, _ int) { em[1] = 2 })},
			tc{"padding byte 0xfe", pub, h, encoded(h, func(em []byte, _ int) { em[5] = 0xfe })},
			tc{"last padding byte 0", pub, h, encoded(h, func(em []byte, t int) { em[k-t-2] = 0 })},
			tc{"no separator", pub, h, encoded(h, func(em []byte, t int) { em[k-t-1] = 0xff })},
			tc{"prefix altered", pub, h, encoded(h, func(em []byte, t int) { em[k-t+3]++ })},
			tc{"hash altered", pub, h, encoded(h, func(em []byte, _ int) { em[k-1]++ })},
			tc{"short padding, garbage after", pub, h, encoded(h, func(em []byte, t int) {
				copy(em[10:], em[k-t-1:]) // 00 01 ff*8 00 DigestInfo hash, then leftovers
			})},
			tc{"an even modulus", &rsa.PublicKey{N: new(big.Int).Add(key.N, big.NewInt(1)), E: pub.E}, h, valid},
			tc{"exponent 1", &rsa.PublicKey{N: key.N, E: 1}, h, valid},
			tc{"an even exponent", &rsa.PublicKey{N: key.N, E: 65536}, h, valid},
			tc{"exponent 2^31+1", &rsa.PublicKey{N: key.N, E: 1<<31 + 1}, h, valid},
		)
	}
	accepted := 0
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v/%s", c.h, c.name), func(t *testing.T) {
			hh := c.h.New()
			hh.Write([]byte(signing))
			want := rsa.VerifyPKCS1v15(c.pub, c.h, hh.Sum(nil), c.sig) == nil
			if got := verifyPKCS1v15(c.pub, c.h, signing, c.sig); got != want {
				t.Errorf("verifyPKCS1v15 = %v, crypto/rsa says %v", got, want)
			}
			if want {
				accepted++
			}
		})
	}
	if accepted != 6 { // "valid" and "valid, built here" of each hash
		t.Errorf("crypto/rsa accepted %d signatures, want 6: the cases do not test what they say", accepted)
	}
}

// TestFastRSA checks which keys and methods take the math/big path.
func TestFastRSA(t *testing.T) {
	big3072, _ := rsa.GenerateKey(rand.Reader, 3072)
	small, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tt := range []struct {
		name string
		m    jwt.SigningMethod
		key  any
		want bool
	}{
		{"RS512, 3072 bits", jwt.SigningMethodRS512, &big3072.PublicKey, true},
		{"RS256, 3072 bits", jwt.SigningMethodRS256, &big3072.PublicKey, true},
		{"RS256, 2048 bits", jwt.SigningMethodRS256, &small.PublicKey, false},
		{"PS256, 3072 bits", jwt.SigningMethodPS256, &big3072.PublicKey, false},
		{"RS256, not an RSA key", jwt.SigningMethodRS256, []byte("secret"), false},
		{"RS256, no modulus", jwt.SigningMethodRS256, &rsa.PublicKey{E: 65537}, false},
	} {
		if _, _, got := fastRSA(tt.m, tt.key); got != tt.want {
			t.Errorf("%s: fastRSA = %v, want %v", tt.name, got, tt.want)
		}
	}
}
