package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// renderChartConfig renders charts/jwtauthz with the helm pinned in
// tools/go.mod and returns the config file from its ConfigMap. The first run
// builds helm (a few minutes without a build cache).
func renderChartConfig(t *testing.T, valuesFile string) []byte {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"tool", "-modfile=" + filepath.Join(root, "tools", "go.mod"), "helm",
		"template", "jwtauthz", "charts/jwtauthz", "--namespace", "jwtauthz", "--kube-version", "1.33.0",
		"--show-only", "templates/configmap.yaml"}
	if valuesFile != "" {
		args = append(args, "--values", filepath.Join("charts/jwtauthz/ci", valuesFile))
	}
	home := t.TempDir()
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
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
			t.Fatal(err)
		}
		if obj.Kind == "ConfigMap" && obj.Data["config.yaml"] != "" {
			return []byte(obj.Data["config.yaml"])
		}
	}
	t.Fatal("the chart rendered no ConfigMap with config.yaml")
	return nil
}

// TestChartConfigLoads checks that the config file the Helm chart renders
// is accepted by jwtauthz's own loader, for the default values and each of
// the chart's ci/ value sets. The key files it names exist only in a pod, so
// this is the structural validation (parseConfig), not buildProviders.
func TestChartConfigLoads(t *testing.T) {
	tests := []struct {
		values string
		check  func(t *testing.T, c *config)
	}{
		{"", func(t *testing.T, c *config) {
			p := c.Providers[0]
			if p.Name != "default" || strings.Join(p.Algorithms, ",") != "RS512" || strings.Join(p.PEMFiles, ",") != "/etc/jwtauthz/keys/public.pem" {
				t.Errorf("provider = %+v, want default RS512 with /etc/jwtauthz/keys/public.pem", p)
			}
			if c.Admin.Listen != "" || c.Cache.MaxEntries != 100000 || !c.ForwardAuthorization || c.IdentityHeaders.StripPrefix != "x-auth-" {
				t.Errorf("config = %+v, want the SPEC defaults", c)
			}
		}},
		{"jwks-url-values.yaml", func(t *testing.T, c *config) {
			p := c.Providers[0]
			if p.JWKSURL == "" || len(p.PEMFiles) != 0 || p.UsernameClaim != "preferred_username" || p.ClaimHeaders["x-auth-roles"] != "realm_access.roles" {
				t.Errorf("provider = %+v, want the JWKS URL provider of the values", p)
			}
			if c.Cache.MaxEntries != 1000000 || c.IdentityHeaders.Payload != "x-jwt-payload" {
				t.Errorf("cache %d payload %q, want 1000000 and x-jwt-payload", c.Cache.MaxEntries, c.IdentityHeaders.Payload)
			}
		}},
		{"pem-secret-values.yaml", func(t *testing.T, c *config) {
			if len(c.Providers) != 2 || c.Providers[1].JWKSFile != "/etc/jwtauthz/keys/partner-jwks.json" || c.Providers[0].ClaimsSchema != "/etc/jwtauthz/keys/schema.json" {
				t.Errorf("providers = %+v, want default (PEM, schema) and partner (JWKS file)", c.Providers)
			}
			if c.Admin.Listen != "0.0.0.0:9002" || c.Admin.RequireClaims["roles"] != "jwtauthz-admin" || c.ForwardAuthorization {
				t.Errorf("admin %+v forward_authorization %v, want the values' admin API and false", c.Admin, c.ForwardAuthorization)
			}
		}},
		{"monitoring-values.yaml", nil},
		{"observability-values.yaml", nil},
	}
	for _, tt := range tests {
		name := tt.values
		if name == "" {
			name = "default values"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data := renderChartConfig(t, tt.values)
			c, err := parseConfig(data)
			if err != nil {
				t.Fatalf("jwtauthz refuses the chart's config: %v\n%s", err, data)
			}
			if c.Listen != "0.0.0.0:9001" || c.HTTPListen != "0.0.0.0:9090" || c.Store.Path != "/data/jwtauthz.db" {
				t.Errorf("listen %q http_listen %q store.path %q, want 0.0.0.0:9001, 0.0.0.0:9090, /data/jwtauthz.db", c.Listen, c.HTTPListen, c.Store.Path)
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
