package deploy_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/jwtauthz/jwtauthz/config"
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
