// Package servetest sets up what a jwtauthz under test runs on: a
// temporary directory, a signing key generated for the test with its
// public half as a PEM file and a JWK Set, and a config file naming them.
// Tests start serve from it (in process, or as a child process) and mint
// tokens with its key.
package servetest

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jwtauthz/jwtauthz/config"
	"github.com/jwtauthz/jwtauthz/internal/signing"
)

// Env is one test's directory, key and config.
type Env struct {
	Dir        string
	Key        crypto.Signer // ES256
	KID        string        // the key's RFC 7638 thumbprint, its kid in JWKSPath
	PublicPEM  string        // path of the public key
	JWKSPath   string        // path of a JWK Set holding the public key
	DBPath     string        // the bbolt file the default config names
	ConfigPath string        // the config file
}

// New makes an Env whose config file serves Check and HTTP on free
// loopback ports, keeps users in DBPath, and verifies ES256 tokens with the
// PEM key:
//
//	listen: 127.0.0.1:0
//	http_listen: 127.0.0.1:0
//	store: {path: DBPath}
//	providers:
//	  - algorithms: [ES256]
//	    pem_files: [PublicPEM]
func New(t testing.TB) *Env {
	t.Helper()
	dir := t.TempDir()
	key, err := signing.Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	keyDir := filepath.Join(dir, "keys")
	kid, err := signing.WriteKeyFiles(keyDir, "ES256", key)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{
		Dir:        dir,
		Key:        key,
		KID:        kid,
		PublicPEM:  filepath.Join(keyDir, signing.PublicKeyFile),
		JWKSPath:   filepath.Join(keyDir, signing.JWKSFile),
		DBPath:     filepath.Join(dir, "users.db"),
		ConfigPath: filepath.Join(dir, "jwtauthz.yaml"),
	}
	e.WriteConfig(t, fmt.Sprintf("listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\nstore: {path: %s}\nproviders:\n  - algorithms: [ES256]\n    pem_files: [%s]\n",
		e.DBPath, e.PublicPEM))
	return e
}

// WriteConfig replaces the config file with doc.
func (e *Env) WriteConfig(t testing.TB, doc string) {
	t.Helper()
	if err := os.WriteFile(e.ConfigPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Config loads the config file as serve does.
func (e *Env) Config(t testing.TB) *config.Config {
	t.Helper()
	cfg, err := config.Load(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// JWKS returns the JWK Set file's contents, to serve from a URL.
func (e *Env) JWKS(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(e.JWKSPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Mint returns a token for user, valid from now for ttl, kid the key's
// thumbprint.
func (e *Env) Mint(t testing.TB, user string, ttl time.Duration) string {
	t.Helper()
	return e.MintWith(t, user, signing.Options{TTL: ttl, Now: time.Now()})
}

// MintWith returns a token for user as o says.
func (e *Env) MintWith(t testing.TB, user string, o signing.Options) string {
	t.Helper()
	tok, err := signing.Mint(e.Key, user, o)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
