//go:build deploy

package deploy_test

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/jwtauthz/jwtauthz/config"
)

// TestChartRefuses checks that values the chart cannot honour fail to
// render, with a message that says why.
func TestChartRefuses(t *testing.T) {
	tests := []struct {
		name    string
		set     []string
		values  string // a values file's content
		wantErr []string
	}{
		{name: "two replicas share no bbolt file", set: []string{"replicaCount=2"},
			wantErr: []string{"replicaCount is 2", "bbolt allows one process per file", "Use one replica (replicaCount: 1)", "set store.backend: etcd"}},
		{name: "etcd without endpoints", set: []string{"store.backend=etcd", "replicaCount=3"},
			wantErr: []string{"store.backend is etcd, but store.etcd.endpoints is empty"}},
		{name: "unknown backend", set: []string{"store.backend=postgres"},
			wantErr: []string{"at '/store/backend': value must be one of 'bolt', 'etcd'"}},
		{name: "store.path is the chart's", set: []string{"store.path=/data/other.db"},
			wantErr: []string{"at '/store': additional properties 'path' not allowed"}},
		{name: "etcd endpoints with bolt", set: []string{"store.etcd.endpoints={https://etcd-0.etcd:2379}"},
			wantErr: []string{"store.etcd.endpoints is set, but store.backend is bolt"}},
		{name: "autoscaling with bolt", set: []string{"autoscaling.enabled=true"},
			wantErr: []string{"autoscaling.enabled needs store.backend: etcd"}},
		{name: "etcd endpoint with a path", set: []string{"store.backend=etcd", "store.etcd.endpoints={https://etcd-0.etcd:2379/v3}"},
			wantErr: []string{"at '/store/etcd/endpoints/0'", "does not match pattern"}},
		{name: "etcd prefix without a trailing slash", set: append(etcdSet(), "store.etcd.prefix=/jwtauthz"),
			wantErr: []string{"at '/store/etcd/prefix'"}},
		{name: "etcd endpoints mixing http and https", set: []string{"store.backend=etcd", "store.etcd.endpoints={http://etcd-0.etcd:2379,https://etcd-1.etcd:2379}"},
			wantErr: []string{"store.etcd.endpoints mixes http:// (http://etcd-0.etcd:2379) and https://"}},
		{name: "etcd TLS over http", set: []string{"store.backend=etcd", "store.etcd.endpoints={http://etcd-0.etcd:2379}", "store.etcd.tls.existingSecret=etcd-tls"},
			wantErr: []string{"store.etcd.tls.existingSecret is set, but store.etcd.endpoints are plain http://", "use https://"}},
		{name: "etcd client certificate without its key", set: append(etcdSet(), "store.etcd.tls.existingSecret=etcd-tls", "store.etcd.tls.secretKeys.key="),
			wantErr: []string{"store.etcd.tls.secretKeys.cert and .key go together"}},
		{name: "etcd username without a password Secret", set: append(etcdSet(), "store.etcd.auth.username=jwtauthz"),
			wantErr: []string{`store.etcd.auth.username is "jwtauthz", but store.etcd.auth.existingSecret is empty`}},
		{name: "etcd password Secret without a username", set: append(etcdSet(), "store.etcd.auth.existingSecret=etcd-auth"),
			wantErr: []string{`store.etcd.auth.existingSecret is "etcd-auth", but store.etcd.auth.username is empty`}},
		{name: "autoscaling minimum above maximum", set: append(etcdSet(), "autoscaling.enabled=true", "autoscaling.minReplicas=5", "autoscaling.maxReplicas=3"),
			wantErr: []string{"autoscaling.minReplicas (5) is more than autoscaling.maxReplicas (3)"}},
		{name: "autoscaling without a CPU request", set: append(etcdSet(), "autoscaling.enabled=true", "resources.requests=null"),
			wantErr: []string{"resources.requests.cpu is not set"}},
		{name: "misspelled top-level value", set: []string{"replicaCont=1"},
			wantErr: []string{"additional properties 'replicaCont' not allowed"}},
		{name: "listen is set by the chart", set: []string{"config.listen=0.0.0.0:1"},
			wantErr: []string{"at '/config': additional properties 'listen' not allowed"}},
		{name: "misspelled provider key", values: "config:\n  providers:\n    - {name: a, algorithms: [RS256], jwks_url: 'https://idp.example/jwks', jwks_refresh_intreval: 1h}\nkeys: {secretName: ''}\n",
			wantErr: []string{"additional properties 'jwks_refresh_intreval' not allowed"}},
		{name: "unsupported algorithm", values: "config:\n  providers:\n    - {name: a, algorithms: [none], pem_files: [/etc/jwtauthz/keys/a.pem]}\n",
			wantErr: []string{"/config/providers/0/algorithms/0", "value must be one of"}},
		{name: "key file outside the keys mount", values: "config:\n  providers:\n    - {name: a, algorithms: [RS256], pem_files: [/tmp/public.pem]}\n",
			wantErr: []string{"'/tmp/public.pem' does not match pattern"}},
		{name: "key files but nothing mounted", set: []string{"keys.secretName="},
			wantErr: []string{"config.providers[0] reads /etc/jwtauthz/keys/public.pem, but neither keys.secretName nor keys.configMapName is set"}},
		{name: "route named default", values: "config:\n  routes:\n    - {name: default, auth: none}\n",
			wantErr: []string{"/config/routes/0/name"}},
		{name: "unknown route auth", values: "config:\n  routes:\n    - {name: public, auth: anonymous}\n",
			wantErr: []string{"/config/routes/0/auth", "value must be one of 'required', 'optional', 'none'"}},
		{name: "misspelled route match key", values: "config:\n  routes:\n    - {name: api, match: {path_prefix: [/api]}}\n",
			wantErr: []string{"additional properties 'path_prefix' not allowed"}},
		{name: "token source with a header and a cookie", values: "config:\n  token_sources:\n    - {header: authorization, cookie: token}\n",
			wantErr: []string{"/config/token_sources/0"}},
		{name: "unknown default_route mode", values: "config:\n  default_route: {mode: audit}\n",
			wantErr: []string{"/config/default_route/mode", "'enforce', 'dry_run'"}},
		{name: "admin API open to every token", set: []string{"config.admin.listen=0.0.0.0:9002"},
			wantErr: []string{`config.admin.listen is "0.0.0.0:9002", but config.admin.require_claims is empty`, "allow_any_verified_token: true"}},
		{name: "unknown OTLP protocol", set: []string{"tracing.otlp.protocol=http"},
			wantErr: []string{"/tracing/otlp/protocol", "'grpc', 'http/protobuf'"}},
		{name: "OTLP endpoint without a scheme", set: []string{"tracing.otlp.endpoint=otel-collector:4317"},
			wantErr: []string{"/tracing/otlp/endpoint", "does not match pattern"}},
		{name: "grace period shorter than the drain", set: []string{"terminationGracePeriodSeconds=10"},
			wantErr: []string{"terminationGracePeriodSeconds (10) must be more than drainSeconds + 15 (20)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var files []string
			if tt.values != "" {
				files = append(files, writeValues(t, tt.values))
			}
			out, err := render(t, files, tt.set...)
			if err == nil {
				t.Fatalf("rendered; want an error. Output:\n%s", out)
			}
			t.Logf("refused: %v", err)
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// etcdSet is --set flags for a valid etcd backend, for the cases to spoil.
func etcdSet() []string {
	return []string{"store.backend=etcd", "store.etcd.endpoints={https://etcd-0.etcd:2379}"}
}

// TestChartRefusesWhatConfigRefuses checks that what the chart refuses to
// render with store.backend etcd, jwtauthz would refuse to load too, and
// that both name the same key; and that bolt still refuses a second
// replica, pointing at etcd.
func TestChartRefusesWhatConfigRefuses(t *testing.T) {
	t.Run("etcd without endpoints", func(t *testing.T) {
		t.Parallel()
		const key = "store.etcd.endpoints"
		_, err := render(t, nil, "store.backend=etcd", "replicaCount=3")
		if err == nil || !strings.Contains(err.Error(), "store.backend is etcd, but "+key+" is empty") {
			t.Errorf("helm template: %v, want a refusal naming %s", err, key)
		}
		// The same config with the endpoints left out, as jwtauthz reads it.
		data := chartConfig(t, "ci/etcd-values.yaml")
		var doc map[string]any
		if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
			t.Fatal(err)
		}
		delete(doc["store"].(map[string]any)["etcd"].(map[string]any), "endpoints")
		noEndpoints, err := yaml.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(noEndpoints); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("config.Parse: %v, want an error naming %s", err, key)
		}
	})
	t.Run("bolt with two replicas", func(t *testing.T) {
		t.Parallel()
		_, err := render(t, nil, "replicaCount=2")
		for _, want := range []string{"replicaCount is 2", "bbolt allows one process per file", "store.backend: etcd"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("helm template: %v, want a refusal mentioning %q", err, want)
			}
		}
	})
}
