package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/jwtauthz/jwtauthz/internal/signing"
)

// runKeygen writes a fresh key pair and a JWK Set holding its public half,
// for tests, demos and small identity providers.
func runKeygen(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "keygen", "--alg ALG --out DIR")
	alg := fs.String("alg", "", "signing algorithm: "+strings.Join(signing.AsymmetricAlgs, ", "))
	out := fs.String("out", "", "directory for private.pem, public.pem and jwks.json (created with mode 0700)")
	bits := fs.Int("bits", 0, "RSA modulus size (default 2048 for RS256/PS256, 3072 for *384, 4096 for *512)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("keygen: unexpected arguments %q", fs.Args())}
	}
	if *alg == "" {
		return &exitError{code: 2, err: fmt.Errorf("keygen: --alg is required (valid: %s)", strings.Join(signing.AsymmetricAlgs, ", "))}
	}
	if *out == "" {
		return &exitError{code: 2, err: errors.New("keygen: --out is required")}
	}

	key, err := signing.Generate(*alg, *bits)
	if err != nil {
		return err
	}
	kid, err := signing.WriteKeyFiles(*out, *alg, key)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "private key: %s\n", filepath.Join(*out, signing.PrivateKeyFile))
	fmt.Fprintf(env.stdout, "public key:  %s\n", filepath.Join(*out, signing.PublicKeyFile))
	fmt.Fprintf(env.stdout, "JWK Set:     %s\n", filepath.Join(*out, signing.JWKSFile))
	fmt.Fprintf(env.stdout, "kid:         %s\n", kid)
	return nil
}
