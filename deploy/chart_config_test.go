//go:build deploy

package deploy_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"

	"github.com/jwtauthz/jwtauthz/authz/route"
	"github.com/jwtauthz/jwtauthz/config"
	"github.com/jwtauthz/jwtauthz/internal/servetest"
)

// TestChartConfigLoads checks that the config file the Helm chart renders
// is accepted by jwtauthz's own loader, for the default values and each of
// the chart's ci/ value sets. The key files it names exist only in a pod, so
// this is the structural validation (config.Parse), not config.BuildProviders.
func TestChartConfigLoads(t *testing.T) {
	tests := []struct {
		values string
		check  func(t *testing.T, c *config.Config)
	}{
		{"", func(t *testing.T, c *config.Config) {
			p := c.Providers[0]
			if p.Name != "default" || strings.Join(p.Algorithms, ",") != "RS512" || strings.Join(p.PEMFiles, ",") != "/etc/jwtauthz/keys/public.pem" {
				t.Errorf("provider = %+v, want default RS512 with /etc/jwtauthz/keys/public.pem", p)
			}
			if c.Admin.Listen != "" || c.Cache.MaxEntries != 100000 || !c.ForwardAuthorization || c.IdentityHeaders.StripPrefix != "x-auth-" {
				t.Errorf("config = %+v, want the SPEC defaults", c)
			}
		}},
		{"jwks-url-values.yaml", func(t *testing.T, c *config.Config) {
			p := c.Providers[0]
			if p.JWKSURL == "" || len(p.PEMFiles) != 0 || p.UsernameClaim != "preferred_username" || p.ClaimHeaders["x-auth-roles"] != "realm_access.roles" {
				t.Errorf("provider = %+v, want the JWKS URL provider of the values", p)
			}
			if c.Cache.MaxEntries != 1000000 || c.IdentityHeaders.Payload != "x-jwt-payload" {
				t.Errorf("cache %d payload %q, want 1000000 and x-jwt-payload", c.Cache.MaxEntries, c.IdentityHeaders.Payload)
			}
		}},
		{"pem-secret-values.yaml", func(t *testing.T, c *config.Config) {
			if len(c.Providers) != 2 || c.Providers[1].JWKSFile != "/etc/jwtauthz/keys/partner-jwks.json" || c.Providers[0].ClaimsSchema != "/etc/jwtauthz/keys/schema.json" {
				t.Errorf("providers = %+v, want default (PEM, schema) and partner (JWKS file)", c.Providers)
			}
			if c.Admin.Listen != "0.0.0.0:9002" || c.Admin.RequireClaims["roles"] != "jwtauthz-admin" || c.ForwardAuthorization {
				t.Errorf("admin %+v forward_authorization %v, want the values' admin API and false", c.Admin, c.ForwardAuthorization)
			}
		}},
		{"monitoring-values.yaml", nil},
		{"observability-values.yaml", nil},
		{"etcd-values.yaml", func(t *testing.T, c *config.Config) {
			e := etcdOf(t, c)
			if !slices.Equal(e.Endpoints, etcdValuesEndpoints) || e.Prefix != "/jwtauthz/prod/" || e.DialTimeout != 3*time.Second {
				t.Errorf("store.etcd endpoints %v prefix %q dial_timeout %v, want %v, /jwtauthz/prod/, 3s", e.Endpoints, e.Prefix, e.DialTimeout, etcdValuesEndpoints)
			}
			wantTLS := config.EtcdTLS{CAFile: "/etc/jwtauthz/etcd-tls/ca.crt", CertFile: "/etc/jwtauthz/etcd-tls/tls.crt", KeyFile: "/etc/jwtauthz/etcd-tls/tls.key"}
			if e.TLS != wantTLS {
				t.Errorf("store.etcd.tls = %+v, want %+v", e.TLS, wantTLS)
			}
			if e.Username != "jwtauthz" || e.PasswordFile != "/etc/jwtauthz/etcd-auth/password" {
				t.Errorf("store.etcd username %q password_file %q, want jwtauthz, /etc/jwtauthz/etcd-auth/password", e.Username, e.PasswordFile)
			}
			if c.Admin.Listen != "0.0.0.0:9002" {
				t.Errorf("admin.listen = %q, want 0.0.0.0:9002", c.Admin.Listen)
			}
		}},
		{"routes-values.yaml", nil}, // TestChartRoutes checks it
		{"etcd-hpa-values.yaml", func(t *testing.T, c *config.Config) {
			e := etcdOf(t, c)
			if !slices.Equal(e.Endpoints, []string{"http://etcd.etcd.svc.cluster.local:2379"}) || e.Prefix != "/jwtauthz/" || e.DialTimeout != 5*time.Second {
				t.Errorf("store.etcd = %+v, want the plaintext endpoint, /jwtauthz/, 5s", e)
			}
			if e.TLS != (config.EtcdTLS{}) || e.Username != "" || e.PasswordFile != "" {
				t.Errorf("store.etcd tls %+v username %q password_file %q, want none", e.TLS, e.Username, e.PasswordFile)
			}
		}},
	}
	for _, tt := range tests {
		name := tt.values
		if name == "" {
			name = "default values"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var files []string
			if tt.values != "" {
				files = append(files, "ci/"+tt.values)
			}
			data := chartConfig(t, files...)
			c := parseConfig(t, data)
			if c.Listen != "0.0.0.0:9001" || c.HTTPListen != "0.0.0.0:9090" {
				t.Errorf("listen %q http_listen %q, want 0.0.0.0:9001, 0.0.0.0:9090", c.Listen, c.HTTPListen)
			}
			// bolt: the file on the pod's volume. etcd: no store.path at
			// all, which config.Parse would refuse, and store.etcd set.
			switch c.Store.Backend {
			case config.BackendBolt:
				if c.Store.Path != "/data/jwtauthz.db" || c.Store.Etcd != nil {
					t.Errorf("store = %+v, want path /data/jwtauthz.db and no etcd", c.Store)
				}
			case config.BackendEtcd:
				if hasPath := writesStorePath(t, data); hasPath || c.Store.Etcd == nil {
					t.Errorf("store = %+v (path set: %v), want etcd and no path", c.Store, hasPath)
				}
			}
			for _, p := range c.Providers {
				for _, f := range append(nonEmpty(p.HMACSecretFile, p.JWKSFile, p.ClaimsSchema), p.PEMFiles...) {
					if !strings.HasPrefix(f, "/etc/jwtauthz/keys/") {
						t.Errorf("provider %s reads %s, outside the keys mount", p.Name, f)
					}
				}
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// etcdValuesEndpoints are the etcd endpoints ci/etcd-values.yaml gives.
var etcdValuesEndpoints = []string{
	"https://etcd-0.etcd-headless.etcd.svc.cluster.local:2379",
	"https://etcd-1.etcd-headless.etcd.svc.cluster.local:2379",
	"https://etcd-2.etcd-headless.etcd.svc.cluster.local:2379",
}

// chartConfig renders the chart with the values files (relative to the
// chart) and returns the config.yaml of the ConfigMap the pod mounts.
func chartConfig(t *testing.T, valuesFiles ...string) string {
	t.Helper()
	out, err := render(t, valuesFiles)
	if err != nil {
		t.Fatal(err)
	}
	return configFile(t, decodeManifests(t, out))
}

// loadedConfig is the rendering's config.yaml as jwtauthz loads it.
func loadedConfig(t *testing.T, m *manifests) *config.Config {
	t.Helper()
	return parseConfig(t, configFile(t, m))
}

// parseConfig loads a rendered config.yaml with jwtauthz's own loader.
func parseConfig(t *testing.T, data string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(data))
	if err != nil {
		t.Fatalf("jwtauthz refuses the chart's config: %v\n%s", err, data)
	}
	return c
}

// writesStorePath reports whether a rendered config.yaml has a store.path
// key at all, which the loaded config cannot tell: with backend etcd an
// absent path and an empty one load alike.
func writesStorePath(t *testing.T, data string) bool {
	t.Helper()
	var doc struct {
		Store map[string]any `json:"store"`
	}
	if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	_, ok := doc.Store["path"]
	return ok
}

// etcdOf returns store.etcd, failing the test when the backend is not etcd.
func etcdOf(t *testing.T, c *config.Config) *config.Etcd {
	t.Helper()
	if c.Store.Backend != config.BackendEtcd || c.Store.Etcd == nil {
		t.Fatalf("store = %+v, want backend etcd", c.Store)
	}
	return c.Store.Etcd
}

// nonEmpty returns the strings of ss that are not empty.
func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// TestChartRoutes renders ci/routes-values.yaml and checks that jwtauthz
// loads the routes, default_route, token_sources and admin settings as the
// values give them, in order, and that the routes pick what they should,
// including the route envoy.yaml's /billing context_extensions name.
func TestChartRoutes(t *testing.T) {
	t.Parallel()
	const valuesFile = "ci/routes-values.yaml"
	data, err := os.ReadFile(filepath.Join(repoRoot, chartDir, valuesFile))
	if err != nil {
		t.Fatal(err)
	}
	// The values, decoded with the config's own types.
	var values struct {
		Config struct {
			Routes       []config.Route       `yaml:"routes"`
			DefaultRoute config.DefaultRoute  `yaml:"default_route"`
			TokenSources []config.TokenSource `yaml:"token_sources"`
			Admin        config.Admin         `yaml:"admin"`
		} `yaml:"config"`
	}
	if err := yamlv3.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	want := values.Config
	if len(want.Routes) == 0 {
		t.Fatalf("%s has no routes", valuesFile)
	}

	c := parseConfig(t, chartConfig(t, valuesFile))
	if diff := gocmp.Diff(want.Routes, c.Routes); diff != "" {
		t.Errorf("routes differ from the values (-values +loaded):\n%s", diff)
	}
	if diff := gocmp.Diff(want.DefaultRoute, c.DefaultRoute); diff != "" {
		t.Errorf("default_route differs from the values (-values +loaded):\n%s", diff)
	}
	if diff := gocmp.Diff(want.TokenSources, c.TokenSources); diff != "" {
		t.Errorf("token_sources differ from the values (-values +loaded):\n%s", diff)
	}
	if diff := gocmp.Diff(want.Admin, c.Admin); diff != "" {
		t.Errorf("admin differs from the values (-values +loaded):\n%s", diff)
	}
	if p := c.Providers[0]; !p.Discovery || p.JWKSURL != "" {
		t.Errorf("provider = %+v, want discovery: true and no jwks_url", p)
	}

	table, err := config.Routes(c)
	if err != nil {
		t.Fatalf("config.Routes: %v", err)
	}
	b, err := loadBootstrap(readEnvoyYAML(t))
	if err != nil {
		t.Fatal(err)
	}
	billing := envoyContextExtensions(t, envoyHTTPConnectionManager(t, b))["/billing"]
	for _, tt := range []struct {
		method, host, path string
		ext                map[string]string
		want               string
	}{
		{"GET", "api.example.com", "/healthz", nil, "health"},
		{"POST", "api.example.com", "/billing/invoices", billing, "billing"},
		{"GET", "api.example.com", "/api/orders/42", nil, "orders-read"},
		{"POST", "api.example.com", "/api/orders", nil, "orders-write"},
		{"GET", "api.example.com", "/api/ordersx", nil, route.DefaultName},
		{"GET", "admin.example.com:443", "/admin/users", nil, "admin"},
		{"GET", "api.example.com", "/admin/users", nil, route.DefaultName},
		{"GET", "api.example.com", "/reports/2026/q1", nil, "reports"},
		{"GET", "api.example.com", "/billing/invoices", nil, route.DefaultName},
	} {
		r := &route.Request{Method: tt.method, Host: tt.host, Path: tt.path, ContextExtensions: tt.ext}
		if got := table.Match(r).Name; got != tt.want {
			t.Errorf("%s %s%s (context_extensions %v): route %s, want %s", tt.method, tt.host, tt.path, tt.ext, got, tt.want)
		}
	}
}

// TestChartAdminAnyVerifiedToken checks that admin.allow_any_verified_token
// reaches the config, where it lets the admin API run without
// require_claims; and that without either, the chart refuses the values as
// jwtauthz would refuse the config, naming the same key.
func TestChartAdminAnyVerifiedToken(t *testing.T) {
	t.Parallel()
	out, err := render(t, nil, "config.admin.listen=0.0.0.0:9002", "config.admin.allow_any_verified_token=true", "config.admin.providers={default}")
	if err != nil {
		t.Fatal(err)
	}
	data := configFile(t, decodeManifests(t, out))
	c := parseConfig(t, data)
	if !c.Admin.AllowAnyVerifiedToken || len(c.Admin.RequireClaims) != 0 || c.Admin.Listen != "0.0.0.0:9002" || !slices.Equal(c.Admin.Providers, []string{"default"}) {
		t.Errorf("admin = %+v, want listen 0.0.0.0:9002, allow_any_verified_token, providers [default] and no require_claims", c.Admin)
	}

	const key = "admin.require_claims"
	_, err = render(t, nil, "config.admin.listen=0.0.0.0:9002")
	if err == nil || !strings.Contains(err.Error(), "config."+key+" is empty") {
		t.Errorf("helm template: %v, want a refusal naming config.%s", err, key)
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
		t.Fatal(err)
	}
	doc["admin"].(map[string]any)["allow_any_verified_token"] = false
	closed, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse(closed); err == nil || !strings.Contains(err.Error(), key) {
		t.Errorf("config.Parse: %v, want an error naming %s", err, key)
	}
}

// TestChartConfigValidates runs the chart README's CI recipe: render the
// values, take config.yaml out of the ConfigMap and run `jwtauthz
// validate` on it, which loads it as serve would (the JWK Set fetched).
// It passes for good values and fails, naming the key, for values that the
// schema cannot refuse but jwtauthz does.
func TestChartConfigValidates(t *testing.T) {
	t.Parallel()
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(servetest.New(t).JWKS(t))
	}))
	defer idp.Close()
	values := func(requireProvider string) string {
		return writeValues(t, fmt.Sprintf(`config:
  providers:
    - name: idp
      issuer: https://idp.example.test
      algorithms: [ES256]
      jwks_url: %s
  routes:
    - {name: health, match: {paths: [/healthz]}, auth: none}
    - {name: billing, match: {context_extensions: {route: billing}}, require: {scopes: [billing], providers: [%s]}}
`, idp.URL, requireProvider))
	}
	validate := func(t *testing.T, valuesFile string) (string, error) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(chartConfig(t, valuesFile)), 0o600); err != nil {
			t.Fatal(err)
		}
		return jwtauthzCmd(t, "validate", "--config", path)
	}

	out, err := validate(t, values("idp"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"valid: ", "idp: issuer https://idp.example.test; algorithms ES256; 1 key from jwks_url", "health: paths /healthz", "billing: context_extensions map[route:billing]"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate printed no %q:\n%s", want, out)
		}
	}

	out, err = validate(t, values("idq"))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(err.Error(), "routes[1].require.providers[0]") {
		t.Errorf("validate of a route requiring an unknown provider: %v, want exit status 1 naming routes[1].require.providers[0]\n%s", err, out)
	}
}
