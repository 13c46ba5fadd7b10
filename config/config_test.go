package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jwtauthz/jwtauthz/internal/signing"
)

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := Parse([]byte("providers:\n  - pem_files: [k.pem]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Providers[0]
	if cfg.Listen != "127.0.0.1:9001" || cfg.HTTPListen != "127.0.0.1:9090" || cfg.Store.Path != "jwtauthz.db" ||
		cfg.Store.Backend != "bolt" || cfg.Store.Etcd != nil ||
		cfg.Cache.MaxEntries != 100000 || !cfg.ForwardAuthorization || cfg.IdentityHeaders.User != "x-auth-user" ||
		cfg.IdentityHeaders.StripPrefix != "x-auth-" {
		t.Errorf("top-level defaults wrong: %+v", cfg)
	}
	if p.Name != "default" || len(p.Algorithms) != 1 || p.Algorithms[0] != "RS512" || p.Leeway != 30*time.Second ||
		p.JWKSRefreshInterval != time.Hour || p.UsernameClaim != "username" {
		t.Errorf("provider defaults wrong: %+v", p)
	}
}

func TestParseConfigTokenSources(t *testing.T) {
	cfg, err := Parse([]byte("providers: [{pem_files: [k]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []TokenSource{{Header: "authorization", Prefix: "Bearer "}}; !slices.Equal(cfg.TokenSources, want) {
		t.Errorf("default token_sources = %+v, want %+v", cfg.TokenSources, want)
	}
	cfg, err = Parse([]byte("token_sources:\n  - header: x-jwt-assertion\n  - header: authorization\n    prefix: 'Bearer '\n  - cookie: access_token\n  - query: access_token\nproviders: [{pem_files: [k]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []TokenSource{{Header: "x-jwt-assertion"}, {Header: "authorization", Prefix: "Bearer "}, {Cookie: "access_token"}, {Query: "access_token"}}
	if !slices.Equal(cfg.TokenSources, want) {
		t.Errorf("token_sources = %+v, want %+v", cfg.TokenSources, want)
	}
}

func TestRoutesBuild(t *testing.T) {
	cfg, err := Parse([]byte(`
routes:
  - name: health
    match: {paths: [/healthz]}
    auth: none
  - name: orders-read
    match: {methods: [GET, HEAD], path_prefixes: [/api/orders]}
    require: {scopes: ["orders:read"]}
  - name: admin
    match: {hosts: [admin.example.com, "*.admin.example.com"], path_regex: "/v[0-9]+/.*"}
    require:
      claims: {realm_access.roles: [admin, ops], level: 2, team: {name: core}}
      providers: [default]
    mode: dry_run
  - name: envoy
    match: {context_extensions: {route: billing}}
default_route: {auth: optional}
providers: [{pem_files: [k]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	table, err := Routes(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(table.Names(), ","); got != "health,orders-read,admin,envoy,default" {
		t.Errorf("routes = %s", got)
	}
	rules := table.Rules()
	if r := rules[2]; !r.DryRun || len(r.Require.Claims) != 3 || r.Require.Claims[0].Path != "level" || r.Require.Claims[2].Path != "team.name" {
		t.Errorf("admin rule = %+v, want dry run with claims level, realm_access.roles, team.name", r)
	}
	if r := rules[4]; r.Auth.String() != "optional" {
		t.Errorf("default rule auth = %v, want optional", r.Auth)
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
		{"bad duration", "providers: [{leeway: soon, pem_files: [k]}]", []string{"line 1", `providers[0].leeway: must be a duration with a unit (e.g. 30s, 1h), got "soon"`}},
		{"duration without unit", "providers:\n  - pem_files: [k]\n    jwks_refresh_interval: 30\n", []string{"line 3", `providers[0].jwks_refresh_interval: must be a duration`, `"30"`}},
		{"bad number", "cache:\n  max_entries: lots\nproviders: [{pem_files: [k]}]", []string{"line 2", `cache.max_entries: must be an integer (int), got "lots"`}},
		{"fraction for an integer", "cache: {max_entries: 2.9}\nproviders: [{pem_files: [k]}]", []string{"line 1", `cache.max_entries: must be an integer (int), got "2.9"`}},
		{"exponent for an integer", "cache: {max_entries: 1e9}\nproviders: [{pem_files: [k]}]", []string{`cache.max_entries: must be an integer (int), got "1e9"`}},
		{"bad boolean", "providers: [{pem_files: [k]}]\nforward_authorization: 3\n", []string{"line 2", `forward_authorization: must be true or false, got "3"`}},
		{"bad nested boolean", "tracing: {enabled: maybe}\nproviders: [{pem_files: [k]}]", []string{`tracing.enabled: must be true or false, got "maybe"`}},
		{"discovery without issuer", "providers:\n  - discovery: true\n", []string{"line 2", "providers[0].discovery: needs issuer"}},
		{"negative cache", "cache: {max_entries: -1}\nproviders: [{pem_files: [k]}]", []string{"cache.max_entries"}},
		{"bad listen", "listen: nope\nproviders: [{pem_files: [k]}]", []string{`listen: "nope" is not a host:port`}},
		{"two providers without issuer", "providers: [{name: a, pem_files: [k]}, {name: b, pem_files: [k]}]", []string{"2 providers have no issuer"}},
		{"bad claim header", "providers: [{pem_files: [k], claim_headers: {X-Email: email}}]", []string{`providers[0].claim_headers: "X-Email"`}},
		{"providers not a list", "providers: {name: a}", []string{"providers must be a list"}},
		{"bad jwks url", "providers: [{jwks_url: 'ftp://x'}]", []string{`providers[0].jwks_url: "ftp://x"`}},
		{"unknown store backend", "store: {backend: redis}\nproviders: [{pem_files: [k]}]", []string{`store.backend: "redis" is not bolt or etcd`}},
		{"empty bolt path", "store: {path: ''}\nproviders: [{pem_files: [k]}]", []string{"store.path: must name the bbolt file"}},
		{"etcd without store.etcd", "store: {backend: etcd}\nproviders: [{pem_files: [k]}]", []string{"store.etcd.endpoints: at least one endpoint is required when store.backend is etcd"}},
		{"etcd without endpoints", "store: {backend: etcd, etcd: {endpoints: []}}\nproviders: [{pem_files: [k]}]", []string{"store.etcd.endpoints: at least one endpoint is required when store.backend is etcd"}},
		{"store.etcd with bolt", "store: {etcd: {endpoints: ['etcd:2379']}}\nproviders: [{pem_files: [k]}]", []string{"store.etcd: is set but store.backend is bolt"}},
		{"store.path with etcd", "store: {backend: etcd, path: users.db, etcd: {endpoints: ['etcd:2379']}}\nproviders: [{pem_files: [k]}]", []string{"store.path: names a bbolt file, but store.backend is etcd"}},
		{"unknown etcd key", "store: {backend: etcd, etcd: {endpoint: ['etcd:2379']}}\nproviders: [{pem_files: [k]}]", []string{`line 1`, `unknown key "store.etcd.endpoint"`}},
		{"unknown etcd tls key", "store:\n  backend: etcd\n  etcd:\n    endpoints: ['https://etcd:2379']\n    tls: {ca: ca.pem}\nproviders: [{pem_files: [k]}]", []string{`line 5`, `unknown key "store.etcd.tls.ca"`}},
		{"etcd endpoints not a list", "store: {backend: etcd, etcd: {endpoints: 'etcd:2379'}}\nproviders: [{pem_files: [k]}]", []string{"store.etcd.endpoints must be a list"}},
		{"etcd endpoint scheme", "store: {backend: etcd, etcd: {endpoints: ['ftp://etcd:2379']}}\nproviders: [{pem_files: [k]}]", []string{`store.etcd.endpoints[0]: "ftp://etcd:2379": the scheme must be http or https`}},
		{"etcd endpoint without port", "store: {backend: etcd, etcd: {endpoints: ['etcd:2379', 'etcd']}}\nproviders: [{pem_files: [k]}]", []string{`store.etcd.endpoints[1]: "etcd" is not an http(s)://host:port URL or a host:port address`}},
		{"etcd endpoint with path", "store: {backend: etcd, etcd: {endpoints: ['http://etcd:2379/v3']}}\nproviders: [{pem_files: [k]}]", []string{`store.etcd.endpoints[0]: "http://etcd:2379/v3" is not`}},
		{"etcd http with tls", "store: {backend: etcd, etcd: {endpoints: ['http://etcd:2379'], tls: {ca_file: ca.pem}}}\nproviders: [{pem_files: [k]}]", []string{`store.etcd.endpoints[0]: "http://etcd:2379" is plain http:// but tls is set; use https://`}},
		{"etcd mixed schemes", "store: {backend: etcd, etcd: {endpoints: ['http://a:2379', 'https://b:2379']}}\nproviders: [{pem_files: [k]}]", []string{"store.etcd.endpoints: mixes http:// and https://"}},
		{"etcd prefix without slash", "store: {backend: etcd, etcd: {endpoints: ['etcd:2379'], prefix: /jwtauthz}}\nproviders: [{pem_files: [k]}]", []string{`store.etcd.prefix: "/jwtauthz" must end with "/"`}},
		{"etcd empty prefix", "store: {backend: etcd, etcd: {endpoints: ['etcd:2379'], prefix: ''}}\nproviders: [{pem_files: [k]}]", []string{`store.etcd.prefix: "" must end with "/"`}},
		{"etcd bad dial_timeout", "store: {backend: etcd, etcd: {endpoints: ['etcd:2379'], dial_timeout: soon}}\nproviders: [{pem_files: [k]}]", []string{"soon", "duration"}},
		{"etcd zero dial_timeout", "store: {backend: etcd, etcd: {endpoints: ['etcd:2379'], dial_timeout: 0s}}\nproviders: [{pem_files: [k]}]", []string{"store.etcd.dial_timeout: must be more than 0s, got 0s"}},
		{"etcd cert without key", "store: {backend: etcd, etcd: {endpoints: ['https://etcd:2379'], tls: {cert_file: c.pem}}}\nproviders: [{pem_files: [k]}]", []string{"store.etcd.tls: cert_file and key_file go together"}},
		{"etcd username without password", "store: {backend: etcd, etcd: {endpoints: ['etcd:2379'], username: jwtauthz}}\nproviders: [{pem_files: [k]}]", []string{"store.etcd.password_file: is required with username"}},
		{"value error names its line", "listen: 127.0.0.1:1\nproviders:\n  - name: a\n    algorithms: [none]\n    pem_files: [k]\n", []string{"line 4: providers[0].algorithms: \"none\" is never allowed"}},
		{"default left in place names the enclosing key's line", "providers:\n  - name: a\n    algorithms: [HS256]\n  - name: b\n    issuer: x\n    leeway: 1h\n    pem_files: [k]\n", []string{"line 6: providers[1].leeway", "line 3: providers[0].algorithms: HS256/384/512 need hmac_secret_file"}},
		{"token source of two kinds", "token_sources: [{header: x-a, cookie: c}]\nproviders: [{pem_files: [k]}]", []string{"line 1: token_sources[0]: set exactly one of header, cookie and query"}},
		{"token source prefix on a cookie", "token_sources:\n  - cookie: at\n    prefix: 'Bearer '\nproviders: [{pem_files: [k]}]", []string{"token_sources[0].prefix: goes with header only"}},
		{"no token sources", "token_sources: []\nproviders: [{pem_files: [k]}]", []string{"token_sources: at least one source is required"}},
		{"token source header not lowercase", "token_sources: [{header: X-Token}]\nproviders: [{pem_files: [k]}]", []string{`token_sources[0].header: "X-Token" is not a lowercase HTTP header name`}},
		{"token source repeated", "token_sources: [{query: t}, {query: t}]\nproviders: [{pem_files: [k]}]", []string{"token_sources[1]: repeats an earlier source"}},
		{"unknown token source key", "token_sources: [{param: t}]\nproviders: [{pem_files: [k]}]", []string{`unknown key "token_sources[0].param"`}},
		{"claim header overwrites the user header", "providers: [{pem_files: [k], claim_headers: {x-auth-user: email}}]", []string{"providers[0].claim_headers.x-auth-user: is an identity header"}},
		{"claim header overwrites the user header with underscores", "providers: [{pem_files: [k], claim_headers: {x_auth_user: email}}]", []string{"providers[0].claim_headers.x_auth_user: is an identity header"}},
		{"claim header overwrites the payload header", "identity_headers: {payload: x-jwt-payload}\nproviders: [{pem_files: [k], claim_headers: {x-jwt-payload: email}}]", []string{"claim_headers.x-jwt-payload: is an identity header"}},
		{"claim header authorization", "providers: [{pem_files: [k], claim_headers: {authorization: email}}]", []string{"providers[0].claim_headers.authorization: a claim may not set authorization"}},
		{"claim header hop-by-hop", "providers: [{pem_files: [k], claim_headers: {transfer-encoding: x}}]", []string{"claim_headers.transfer-encoding: a claim may not set"}},
		{"claim header pseudo-header", "providers: [{pem_files: [k], claim_headers: {':path': x}}]", []string{`providers[0].claim_headers: ":path" is not a lowercase HTTP header name`}},
		{"claim header path", "providers: [{pem_files: [k], claim_headers: {x-email: 'a..b'}}]", []string{`claim_headers.x-email: "a..b" is not a claim path`}},
		{"route name", "routes: [{name: Health}]\nproviders: [{pem_files: [k]}]", []string{`line 1: routes[0].name: "Health" must match [a-z0-9-]+`}},
		{"route name default", "routes: [{name: default}]\nproviders: [{pem_files: [k]}]", []string{`routes[0].name: "default" names default_route`}},
		{"route names unique", "routes: [{name: a}, {name: a}]\nproviders: [{pem_files: [k]}]", []string{`routes[1].name: "a" is used by another route`}},
		{"route regex", "routes:\n  - name: a\n    match: {path_regex: '(x'}\nproviders: [{pem_files: [k]}]", []string{"line 3: routes[0].match.path_regex: not an RE2 regular expression"}},
		{"route unknown match key", "routes:\n  - name: a\n    match:\n      prefix: /x\nproviders: [{pem_files: [k]}]", []string{`line 4: unknown key "routes[0].match.prefix"`}},
		{"route unknown key", "routes: [{name: a, scopes: [x]}]\nproviders: [{pem_files: [k]}]", []string{`unknown key "routes[0].scopes"`}},
		{"route auth", "routes: [{name: a, auth: maybe}]\nproviders: [{pem_files: [k]}]", []string{`routes[0].auth: "maybe" is not required, optional or none`}},
		{"route mode", "routes: [{name: a, mode: audit}]\nproviders: [{pem_files: [k]}]", []string{`routes[0].mode: "audit" is not enforce or dry_run`}},
		{"route require with auth none", "routes: [{name: a, auth: none, require: {scopes: [x]}}]\nproviders: [{pem_files: [k]}]", []string{"routes[0].require: is set but auth is none"}},
		{"route unknown provider", "routes: [{name: a, require: {providers: [corp]}}]\nproviders: [{pem_files: [k]}]", []string{`routes[0].require.providers[0]: "corp" is not a configured provider (default)`}},
		{"route claim value", "routes: [{name: a, require: {claims: {roles: [[a]]}}}]\nproviders: [{pem_files: [k]}]", []string{"routes[0].require.claims: require.claims.roles: want a string, number or boolean"}},
		{"route host", "routes: [{name: a, match: {hosts: ['API.example.com:443']}}]\nproviders: [{pem_files: [k]}]", []string{`routes[0].match.hosts[0]: "API.example.com:443" is not a lowercase host name`}},
		{"route method", "routes: [{name: a, match: {methods: [get]}}]\nproviders: [{pem_files: [k]}]", []string{`routes[0].match.methods[0]: "get" is not an uppercase HTTP method`}},
		{"route path not normal", "routes: [{name: a, match: {path_prefixes: [/public/../x]}}]\nproviders: [{pem_files: [k]}]", []string{`routes[0].match.path_prefixes[0]: "/public/../x" is not a path in normal form`}},
		{"route path with query", "routes: [{name: a, match: {paths: ['/x?y=1']}}]\nproviders: [{pem_files: [k]}]", []string{`routes[0].match.paths[0]`}},
		{"default_route dry run misspelled", "default_route: {mode: dryrun}\nproviders: [{pem_files: [k]}]", []string{`default_route.mode: "dryrun" is not enforce or dry_run`}},
		{"default_route has no name", "default_route: {name: x}\nproviders: [{pem_files: [k]}]", []string{`unknown key "default_route.name"`}},
		{"etcd password without username", "store: {backend: etcd, etcd: {endpoints: ['etcd:2379'], password_file: pw}}\nproviders: [{pem_files: [k]}]", []string{"store.etcd.username: is required with password_file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
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
	key, err := signing.Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.WriteKeyFiles(filepath.Join(dir, "es"), "ES256", key); err != nil {
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
		{"missing PEM file", "providers: [{pem_files: [" + filepath.Join(dir, "nope.pem") + "]}]", []string{"line 1: providers[0].pem_files[0]", "nope.pem", "no such file"}},
		{"not PEM", "providers: [{pem_files: [" + garbage + "]}]", []string{"line 1: providers[0].pem_files[0]", garbage}},
		{"key type fits no allowed alg", "providers: [{algorithms: [RS512], pem_files: [" + es256PEM + "]}]", []string{"line 1: providers[0].pem_files[0]", "EC P-256 key fits none of the algorithms [RS512]"}},
		{"schema does not compile", "providers: [{algorithms: [ES256], pem_files: [" + es256PEM + "], claims_schema: " + schema + "}]", []string{"line 1: providers[0].claims_schema", schema}},
		{"HMAC secret too short", "providers: [{algorithms: [HS256], hmac_secret_file: " + short + "}]", []string{"line 1: providers[0].hmac_secret_file", "too short"}},
		{"missing JWKS file", "providers: [{algorithms: [ES256], jwks_file: " + filepath.Join(dir, "none.json") + "}]", []string{"line 1: providers[0].jwks_file", "none.json"}},
		{"missing schema, on its line", "providers:\n  - algorithms: [ES256]\n    pem_files: [" + es256PEM + "]\n    claims_schema: " + filepath.Join(dir, "nope.json") + "\n",
			[]string{"line 4: providers[0].claims_schema", "nope.json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			_, err = BuildProviders(cfg, BuildOptions{})
			if err == nil {
				t.Fatal("buildProviders succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "no such file") && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %q does not wrap fs.ErrNotExist", err)
			}
		})
	}
}

func TestParseConfigEtcd(t *testing.T) {
	cfg, err := Parse([]byte("store:\n  backend: etcd\n  etcd:\n    endpoints: [http://10.0.0.1:2379, 'etcd-1:2379']\nproviders:\n  - pem_files: [k.pem]\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := cfg.Store.Etcd
	if cfg.Store.Backend != "etcd" || cfg.Store.Path != "" || e == nil {
		t.Fatalf("store = %+v, want backend etcd, no path, store.etcd set", cfg.Store)
	}
	if len(e.Endpoints) != 2 || e.Prefix != "/jwtauthz/" || e.DialTimeout != 5*time.Second || e.Username != "" || e.TLS.set() {
		t.Errorf("store.etcd defaults wrong: %+v", e)
	}
	// --db sets store.path after the file was read.
	cfg.Store.Path = "users.db"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "store.path: names a bbolt file, but store.backend is etcd; remove store.path (and --db)") {
		t.Errorf("validate with --db and etcd = %v", err)
	}
}

func TestEtcdOptionsReadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	password := write("password", "s3cret\n")
	empty := write("empty", "\n")
	garbage := write("garbage.pem", "not pem")
	ca, cert, key := writeTestCA(t, dir)
	missing := filepath.Join(dir, "missing")

	base := func() *Etcd {
		c := defaultEtcd()
		c.Endpoints = []string{"https://etcd:2379"}
		return &c
	}
	t.Run("password and TLS", func(t *testing.T) {
		c := base()
		c.Username, c.PasswordFile = "jwtauthz", password
		c.TLS = EtcdTLS{CAFile: ca, CertFile: cert, KeyFile: key}
		opts, err := EtcdOptions(c)
		if err != nil {
			t.Fatal(err)
		}
		if opts.Username != "jwtauthz" || opts.Password != "s3cret" {
			t.Errorf("credentials = %q, %q; want jwtauthz, s3cret (without the newline)", opts.Username, opts.Password)
		}
		if opts.TLS == nil || opts.TLS.RootCAs == nil || len(opts.TLS.Certificates) != 1 {
			t.Errorf("TLS = %+v, want the CA pool and one client certificate", opts.TLS)
		}
		if opts.Prefix != "/jwtauthz/" || opts.DialTimeout != 5*time.Second || opts.RequestTimeout != opts.DialTimeout {
			t.Errorf("options = %+v", opts)
		}
	})
	t.Run("https without tls uses the system roots", func(t *testing.T) {
		opts, err := EtcdOptions(base())
		if err != nil {
			t.Fatal(err)
		}
		if opts.TLS == nil || opts.TLS.RootCAs != nil {
			t.Errorf("TLS = %+v, want TLS with the system roots", opts.TLS)
		}
	})
	t.Run("plain", func(t *testing.T) {
		c := base()
		c.Endpoints = []string{"http://etcd:2379"}
		if opts, err := EtcdOptions(c); err != nil || opts.TLS != nil {
			t.Errorf("etcdOptions = TLS %v, %v; want no TLS", opts.TLS, err)
		}
	})

	errTests := []struct {
		name   string
		modify func(c *Etcd)
		want   []string
	}{
		{"missing password file", func(c *Etcd) { c.Username, c.PasswordFile = "u", missing }, []string{"store.etcd.password_file", missing, "no such file"}},
		{"empty password file", func(c *Etcd) { c.Username, c.PasswordFile = "u", empty }, []string{"store.etcd.password_file", "is empty"}},
		{"missing CA", func(c *Etcd) { c.TLS.CAFile = missing }, []string{"store.etcd.tls.ca_file", missing}},
		{"CA not PEM", func(c *Etcd) { c.TLS.CAFile = garbage }, []string{"store.etcd.tls.ca_file: no PEM certificate in " + garbage}},
		{"key does not fit", func(c *Etcd) { c.TLS.CertFile, c.TLS.KeyFile = cert, garbage }, []string{"store.etcd.tls.cert_file, key_file"}},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.modify(c)
			_, err := EtcdOptions(c)
			if err == nil {
				t.Fatal("etcdOptions succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// writeTestCA writes a self-signed CA certificate, and a client
// certificate and key it signed, as PEM files in dir.
func writeTestCA(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clientTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "jwtauthz"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, caCert, &clientKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("client.pem", "CERTIFICATE", clientDER), write("client-key.pem", "PRIVATE KEY", keyDER)
}
