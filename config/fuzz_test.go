package config

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParseConfig feeds arbitrary documents to Parse. It must never
// panic or hang; a refusal must say where (a line) or what (a key of the
// config file); an accepted config must hold the invariants serve relies on.
// The committed corpus (testdata/fuzz/FuzzParseConfig) holds the README's
// config and documents shaped like the tests' bad configs.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("providers:\n  - pem_files: [k.pem]\n"))
	f.Add([]byte("providers: [{name: a, issuer: x, algorithms: [HS256], hmac_secret_file: s}, {name: b, jwks_url: 'https://idp/jwks'}]\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	keys := configKeys(reflect.TypeOf(Config{}), "")
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse failed (%v) and returned a config", err)
			}
			if !namesLineOrKey(err.Error(), keys) {
				t.Fatalf("error names neither a line nor a config key: %q\ndocument: %q", err, data)
			}
			return
		}
		checkConfigInvariants(t, cfg)
	})
}

var (
	lineRE  = regexp.MustCompile(`\bline \d+\b`)
	indexRE = regexp.MustCompile(`\[\d+\]`)
)

// maxLeewayForFuzz is the largest leeway validate accepts.
const maxLeewayForFuzz = 5 * time.Minute

// namesLineOrKey reports whether an error message points at a line of the
// document or names a config key (a key path such as providers[0].leeway
// starts with one of them), or is one of Parse's whole-document
// messages.
func namesLineOrKey(msg string, keys []string) bool {
	if lineRE.MatchString(msg) || strings.Contains(msg, "the file is empty") {
		return true
	}
	msg = indexRE.ReplaceAllString(msg, "")
	for _, k := range keys {
		if strings.Contains(msg, k) {
			return true
		}
	}
	return false
}

// configKeys lists every key of the config file by its path, list indexes
// left out (providers.pem_files).
func configKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if name == "" {
			continue
		}
		out = append(out, joinPath(prefix, name))
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, configKeys(ft, joinPath(prefix, name))...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// checkConfigInvariants checks what serve relies on once Parse has
// accepted a document.
func checkConfigInvariants(t *testing.T, cfg *Config) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("an accepted config does not validate again: %v", err)
	}
	if len(cfg.Providers) == 0 {
		t.Fatal("accepted a config without providers")
	}
	if cfg.Listen == "" || cfg.Cache.MaxEntries < 0 {
		t.Fatalf("accepted listen %q, cache.max_entries %d", cfg.Listen, cfg.Cache.MaxEntries)
	}
	names := map[string]bool{}
	noIssuer := 0
	for i, p := range cfg.Providers {
		if !providerNameRE.MatchString(p.Name) || names[p.Name] {
			t.Fatalf("providers[%d]: accepted name %q (duplicate: %v)", i, p.Name, names[p.Name])
		}
		names[p.Name] = true
		if p.Issuer == "" {
			noIssuer++
		}
		if len(p.Algorithms) == 0 {
			t.Fatalf("providers[%d]: accepted an empty allowlist", i)
		}
		for _, a := range p.Algorithms {
			if !slices.Contains(Algorithms, a) {
				t.Fatalf("providers[%d]: accepted algorithm %q", i, a)
			}
			if strings.HasPrefix(a, "HS") && p.HMACSecretFile == "" {
				t.Fatalf("providers[%d]: accepted %s without hmac_secret_file", i, a)
			}
		}
		if len(p.PEMFiles) == 0 && p.JWKSFile == "" && p.JWKSURL == "" && p.HMACSecretFile == "" && !p.Discovery {
			t.Fatalf("providers[%d]: accepted a provider without keys", i)
		}
		if p.Discovery && (p.Issuer == "" || p.JWKSURL != "") {
			t.Fatalf("providers[%d]: accepted discovery with issuer %q and jwks_url %q", i, p.Issuer, p.JWKSURL)
		}
		if p.Leeway < 0 || p.Leeway > maxLeewayForFuzz {
			t.Fatalf("providers[%d]: accepted leeway %v", i, p.Leeway)
		}
		if p.UsernameClaim == "" {
			t.Fatalf("providers[%d]: accepted an empty username_claim", i)
		}
	}
	if noIssuer > 1 {
		t.Fatalf("accepted %d providers without issuer", noIssuer)
	}
}

// TestParseConfigYAMLErrorsNameALine covers the YAML errors that yaml.v3
// reports without a line (the fuzz target's first finding was the first).
func TestParseConfigYAMLErrorsNameALine(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unterminated quote on line 1", `"`, "line 1: "},
		{"control character on line 3", "listen: 127.0.0.1:1\nproviders:\n  - name: a\x01\n", "line 3: "},
		{"invalid UTF-8 on line 2", "listen: 127.0.0.1:1\nstore: {path: \xff}\n", "line 2: "},
		{"unknown anchor on line 2", "listen: 127.0.0.1:1\nstore: *nowhere\n", "line 2: "},
		{"anchor containing itself on line 4", "providers: [{pem_files: [k]}]\nadmin:\n  require_claims: &a\n    x: *a\n", "line 4: "},
		{"bad !!binary on line 2", "providers: [{pem_files: [k]}]\nlisten: !!binary '@@'\n", "line 2: "},
		{"bad merge on line 2", "providers: [{pem_files: [k]}]\nstore: {<<: 5}\n", "line 2: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", err, tc.want)
			}
		})
	}
}
