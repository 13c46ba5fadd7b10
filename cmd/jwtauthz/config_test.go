package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := parseConfig([]byte("providers:\n  - pem_files: [k.pem]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Providers[0]
	if cfg.Listen != "127.0.0.1:9001" || cfg.HTTPListen != "127.0.0.1:9090" || cfg.Store.Path != "jwtauthz.db" ||
		cfg.Cache.MaxEntries != 100000 || !cfg.ForwardAuthorization || cfg.IdentityHeaders.User != "x-auth-user" ||
		cfg.IdentityHeaders.StripPrefix != "x-auth-" {
		t.Errorf("top-level defaults wrong: %+v", cfg)
	}
	if p.Name != "default" || len(p.Algorithms) != 1 || p.Algorithms[0] != "RS512" || p.Leeway != 30*time.Second ||
		p.JWKSRefreshInterval != time.Hour || p.UsernameClaim != "username" {
		t.Errorf("provider defaults wrong: %+v", p)
	}
}

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string // every one must appear in the error
	}{
		{"unknown top-level key", "listen: 1.2.3.4:1\nlisten_adress: x\nproviders: [{pem_files: [k]}]", []string{`line 2`, `unknown key "listen_adress"`}},
		{"unknown nested key", "providers:\n  - name: a\n    pem_file: k.pem\n", []string{`line 3`, `unknown key "providers[0].pem_file"`}},
		{"unknown key under identity_headers", "identity_headers: {usr: x}\nproviders: [{pem_files: [k]}]", []string{`unknown key "identity_headers.usr"`}},
		{"no providers", "listen: 127.0.0.1:1\n", []string{"providers: at least one provider"}},
		{"empty file", "", []string{"at least one provider"}},
		{"duplicate names", "providers: [{name: a, issuer: x, pem_files: [k]}, {name: a, pem_files: [k]}]", []string{`providers[1].name: "a" is used by another provider`}},
		{"bad name", "providers: [{name: My_IdP, pem_files: [k]}]", []string{`providers[0].name: "My_IdP" must match [a-z0-9-]+`}},
		{"alg none", "providers: [{algorithms: [RS256, none], pem_files: [k]}]", []string{`providers[0].algorithms: "none" is never allowed`}},
		{"alg None", "providers: [{algorithms: [None], pem_files: [k]}]", []string{`"none" is never allowed`}},
		{"empty allowlist", "providers: [{algorithms: [], pem_files: [k]}]", []string{"providers[0].algorithms: an allowlist"}},
		{"unknown alg", "providers: [{algorithms: [RS999], pem_files: [k]}]", []string{`unknown algorithm "RS999"`}},
		{"HS without secret", "providers: [{algorithms: [HS256], pem_files: [k]}]", []string{"providers[0].algorithms: HS256/384/512 need hmac_secret_file"}},
		{"no keys", "providers: [{name: a}]", []string{"providers[0].pem_files: a provider needs keys"}},
		{"bad duration", "providers: [{leeway: soon, pem_files: [k]}]", []string{"soon", "duration"}},
		{"bad number", "cache: {max_entries: lots}\nproviders: [{pem_files: [k]}]", []string{"lots"}},
		{"negative cache", "cache: {max_entries: -1}\nproviders: [{pem_files: [k]}]", []string{"cache.max_entries"}},
		{"bad listen", "listen: nope\nproviders: [{pem_files: [k]}]", []string{`listen: "nope" is not a host:port`}},
		{"two providers without issuer", "providers: [{name: a, pem_files: [k]}, {name: b, pem_files: [k]}]", []string{"2 providers have no issuer"}},
		{"bad claim header", "providers: [{pem_files: [k], claim_headers: {X-Email: email}}]", []string{`providers[0].claim_headers: "X-Email"`}},
		{"providers not a list", "providers: {name: a}", []string{"providers must be a list"}},
		{"bad jwks url", "providers: [{jwks_url: 'ftp://x'}]", []string{`providers[0].jwks_url: "ftp://x"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.doc))
			if err == nil {
				t.Fatal("parseConfig succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestBuildProvidersErrorsNameKeyAndFile(t *testing.T) {
	dir := t.TempDir()
	key, err := generateKey("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writeKeyFiles(filepath.Join(dir, "es"), "ES256", key); err != nil {
		t.Fatal(err)
	}
	es256PEM := filepath.Join(dir, "es", "public.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not pem"), 0o600)
	schema := filepath.Join(dir, "schema.json")
	os.WriteFile(schema, []byte(`{"type": 12}`), 0o600)
	short := filepath.Join(dir, "secret")
	os.WriteFile(short, []byte("short"), 0o600)

	tests := []struct {
		name, doc string
		want      []string
	}{
		{"missing PEM file", "providers: [{pem_files: [" + filepath.Join(dir, "nope.pem") + "]}]", []string{"providers[0].pem_files[0]", "nope.pem", "no such file"}},
		{"not PEM", "providers: [{pem_files: [" + garbage + "]}]", []string{"providers[0].pem_files[0]", garbage}},
		{"key type fits no allowed alg", "providers: [{algorithms: [RS512], pem_files: [" + es256PEM + "]}]", []string{"providers[0].pem_files[0]", "EC P-256 key fits none of the algorithms [RS512]"}},
		{"schema does not compile", "providers: [{algorithms: [ES256], pem_files: [" + es256PEM + "], claims_schema: " + schema + "}]", []string{"providers[0].claims_schema", schema}},
		{"HMAC secret too short", "providers: [{algorithms: [HS256], hmac_secret_file: " + short + "}]", []string{"providers[0].hmac_secret_file", "too short"}},
		{"missing JWKS file", "providers: [{algorithms: [ES256], jwks_file: " + filepath.Join(dir, "none.json") + "}]", []string{"providers[0].jwks_file", "none.json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig([]byte(tc.doc))
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			_, err = buildProviders(cfg, buildOptions{logger: discardLogger()})
			if err == nil {
				t.Fatal("buildProviders succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
