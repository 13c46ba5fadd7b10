package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jwtauthz/jwtauthz/config"
)

// renderChartConfig renders charts/jwtauthz with the helm pinned in
// tools/go.mod and returns the config file from its ConfigMap. The first run
// builds helm (a few minutes without a build cache).
func renderChartConfig(t *testing.T, valuesFile string) []byte {
	t.Helper()
	var files []string
	if valuesFile != "" {
		files = append(files, filepath.Join("charts/jwtauthz/ci", valuesFile))
	}
	out, err := helmTemplateConfig(t, files)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// helmTemplateConfig runs helm template with the values files (relative to
// the repository) and --set flags, and returns the config file, or helm's
// error with its stderr.
func helmTemplateConfig(t *testing.T, valuesFiles []string, set ...string) ([]byte, error) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"tool", "-modfile=" + filepath.Join(root, "tools", "go.mod"), "helm",
		"template", "jwtauthz", "charts/jwtauthz", "--namespace", "jwtauthz", "--kube-version", "1.33.0",
		"--show-only", "templates/configmap.yaml"}
	for _, f := range valuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	home := t.TempDir()
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}

	dec := yaml.NewDecoder(&stdout)
	for {
		var obj struct {
			Kind     string `yaml:"kind"`
			Metadata struct{ Name string }
			Data     map[string]string `yaml:"data"`
		}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if obj.Kind == "ConfigMap" && obj.Data["config.yaml"] != "" {
			return []byte(obj.Data["config.yaml"]), nil
		}
	}
	return nil, errors.New("the chart rendered no ConfigMap with config.yaml")
}

// TestChartConfigLoads checks that the config file the Helm chart renders
// is accepted by jwtauthz's own loader, for the default values and each of
// the chart's ci/ value sets. The key files it names exist only in a pod, so
// this is the structural validation (parseConfig), not buildProviders.
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
			want := []string{
				"https://etcd-0.etcd-headless.etcd.svc.cluster.local:2379",
				"https://etcd-1.etcd-headless.etcd.svc.cluster.local:2379",
				"https://etcd-2.etcd-headless.etcd.svc.cluster.local:2379",
			}
			if !slices.Equal(e.Endpoints, want) || e.Prefix != "/jwtauthz/prod/" || e.DialTimeout != 3*time.Second {
				t.Errorf("store.etcd endpoints %v prefix %q dial_timeout %v, want %v, /jwtauthz/prod/, 3s", e.Endpoints, e.Prefix, e.DialTimeout, want)
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
			data := renderChartConfig(t, tt.values)
			c, err := config.Parse(data)
			if err != nil {
				t.Fatalf("jwtauthz refuses the chart's config: %v\n%s", err, data)
			}
			if c.Listen != "0.0.0.0:9001" || c.HTTPListen != "0.0.0.0:9090" {
				t.Errorf("listen %q http_listen %q, want 0.0.0.0:9001, 0.0.0.0:9090", c.Listen, c.HTTPListen)
			}
			// bolt: the file on the pod's volume. etcd: no store.path at
			// all, which parseConfig would refuse, and store.etcd set.
			switch c.Store.Backend {
			case config.BackendBolt:
				if c.Store.Path != "/data/jwtauthz.db" || c.Store.Etcd != nil {
					t.Errorf("store = %+v, want path /data/jwtauthz.db and no etcd", c.Store)
				}
			case config.BackendEtcd:
				var doc struct{ Store map[string]any }
				if err := yaml.Unmarshal(data, &doc); err != nil {
					t.Fatal(err)
				}
				if _, ok := doc.Store["path"]; ok || c.Store.Etcd == nil {
					t.Errorf("store = %v, want etcd and no path", doc.Store)
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

// TestChartRefusesWhatConfigRefuses checks that what the chart refuses to
// render with store.backend etcd, jwtauthz would refuse to load too, and
// that both name the same key; and that bolt still refuses a second
// replica, pointing at etcd.
func TestChartRefusesWhatConfigRefuses(t *testing.T) {
	t.Run("etcd without endpoints", func(t *testing.T) {
		t.Parallel()
		const key = "store.etcd.endpoints"
		_, err := helmTemplateConfig(t, nil, "store.backend=etcd", "replicaCount=3")
		if err == nil || !strings.Contains(err.Error(), "store.backend is etcd, but "+key+" is empty") {
			t.Errorf("helm template: %v, want a refusal naming %s", err, key)
		}
		// The same config with the endpoints left out, as jwtauthz reads it.
		data, err := helmTemplateConfig(t, []string{"charts/jwtauthz/ci/etcd-values.yaml"})
		if err != nil {
			t.Fatal(err)
		}
		var doc map[string]any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		delete(doc["store"].(map[string]any)["etcd"].(map[string]any), "endpoints")
		noEndpoints, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(noEndpoints); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("parseConfig: %v, want an error naming %s", err, key)
		}
	})
	t.Run("bolt with two replicas", func(t *testing.T) {
		t.Parallel()
		_, err := helmTemplateConfig(t, nil, "replicaCount=2")
		for _, want := range []string{"replicaCount is 2", "bbolt allows one process per file", "store.backend: etcd"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("helm template: %v, want a refusal mentioning %q", err, want)
			}
		}
	})
}
