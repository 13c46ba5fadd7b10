package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jwtauthz/jwtauthz/internal/signing"
)

// runMint prints a signed JWT for tests and demos.
func runMint(_ context.Context, env *cliEnv, args []string) error {
	return mintCommand(env, args, time.Now)
}

// mintCommand is runMint with the clock injected.
func mintCommand(env *cliEnv, args []string, now func() time.Time) error {
	fs := newFlagSet(env, "mint", "--key FILE [flags] USERNAME")
	keyPath := fs.String("key", "", "PEM private key (PKCS#8, PKCS#1 or SEC 1), or with --alg HS* a file whose bytes are the shared secret")
	alg := fs.String("alg", "", "signing algorithm (default: the alg keygen gave the key in the jwks.json beside it; else from the key: RS512 for RSA, ES256/384/512 by curve, EdDSA); HS256/384/512 need a secret file")
	kid := fs.String("kid", "", `kid header (default: the key's RFC 7638 signing.Thumbprint, as in keygen's jwks.json; "" omits it)`)
	iss := fs.String("iss", "", "iss claim")
	var aud, claims stringList
	fs.Var(&aud, "aud", "aud claim; repeat for several (then aud is an array)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime: exp = iat + ttl (negative gives an already-expired token)")
	fs.Var(&claims, "claim", "extra claim k=v, repeatable; v is parsed as JSON when it is valid JSON, else taken as a string; overrides the defaults")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return &exitError{code: 2, err: fmt.Errorf("mint: want exactly one USERNAME after the flags, got %q", fs.Args())}
	}
	if *keyPath == "" {
		return &exitError{code: 2, err: errors.New("mint: --key is required")}
	}
	extra, err := parseClaimFlags(claims)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	omitKID := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "kid" && *kid == "" {
			omitKID = true
		}
	})

	var key any
	if signing.IsHMAC(*alg) {
		secret, err := signing.LoadHMACSecret(*keyPath)
		if err != nil {
			return err
		}
		if n := signing.HMACMinBytes(*alg); len(secret) < n {
			fmt.Fprintf(env.stderr, "jwtauthz: warning: a %d-byte secret is shorter than the %d bytes RFC 7518 asks for %s\n", len(secret), n, *alg)
		}
		key = secret
	} else {
		signer, err := signing.LoadPrivateKey(*keyPath)
		if err != nil {
			if errors.Is(err, signing.ErrNoPrivateKeyPEM) {
				return fmt.Errorf("%w (for a shared-secret file, give --alg %s)", err, strings.Join(signing.HMACAlgs, "/"))
			}
			return err
		}
		if *alg == "" {
			*alg = signing.KeygenAlg(*keyPath, signer.Public())
		}
		key = signer
	}

	token, err := signing.Mint(key, fs.Arg(0), signing.Options{
		Alg:      *alg,
		KID:      *kid,
		NoKID:    omitKID,
		Issuer:   *iss,
		Audience: aud,
		TTL:      *ttl,
		Claims:   extra,
		Now:      now(),
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, token)
	return nil
}

// parseClaimFlags turns --claim k=v values into claims. v is decoded as JSON
// when it is exactly one valid JSON value (numbers stay exact), else it is
// the string itself, so --claim role=admin needs no quoting.
func parseClaimFlags(kvs []string) (map[string]any, error) {
	claims := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("mint: --claim %q: want key=value", kv)
		}
		claims[k] = parseClaimValue(v)
	}
	return claims, nil
}

func parseClaimValue(v string) any {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.UseNumber()
	var parsed any
	if err := dec.Decode(&parsed); err != nil {
		return v
	}
	if _, err := dec.Token(); err != io.EOF {
		return v // trailing data: "1 2", "{} x"
	}
	return parsed
}
