package deploy_test

import (
	"bufio"
	"bytes"
	"cmp"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "charts/jwtauthz" // relative to repoRoot
	release     = "jwtauthz"
	namespace   = "jwtauthz"
	kubeVersion = "1.33.0" // helm built with `go tool` defaults to 1.20, below the chart's kubeVersion
	authzHealth = "envoy.service.auth.v3.Authorization"
)

// helmHome isolates helm's cache, config and data directories from the
// user's; TestMain creates it.
var helmHome string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jwtauthz-helm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helmHome = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	helmBuild    sync.Once
	helmBuildErr error
)

// helm runs the helm pinned in tools/go.mod (`go tool helm`) in the
// repository root and returns its stdout, or an error carrying its stderr.
// The first call builds helm, which takes a few minutes without a build cache.
func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	helmBuild.Do(func() {
		start := time.Now()
		_, helmBuildErr = runHelm("version")
		if d := time.Since(start); d > 10*time.Second {
			t.Logf("built helm (tools/go.mod) in %v; later runs use the build cache", d.Round(time.Second))
		}
	})
	if helmBuildErr != nil {
		t.Fatalf("go tool helm (pinned in tools/go.mod): %v", helmBuildErr)
	}
	return runHelm(args...)
}

func runHelm(args ...string) ([]byte, error) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("go", append([]string{"tool", "-modfile=" + filepath.Join(root, "tools", "go.mod"), "helm"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"),
		"KUBECONFIG="+filepath.Join(helmHome, "no-kubeconfig"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// writeValues writes a values file for one test and returns its path. Not
// in t.TempDir(): its name comes from the test's, and helm splits --values
// at commas.
func writeValues(t *testing.T, content string) string {
	t.Helper()
	f, err := os.CreateTemp(helmHome, "values-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(f.Name()) })
	return f.Name()
}

// render runs helm template on the chart with the given values files
// (relative to the chart) and --set flags.
func render(t *testing.T, valuesFiles []string, set ...string) ([]byte, error) {
	t.Helper()
	return renderChartDir(t, chartDir, valuesFiles, set...)
}

func renderChartDir(t *testing.T, dir string, valuesFiles []string, set ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", release, dir, "--namespace", namespace, "--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		if !filepath.IsAbs(f) {
			f = filepath.Join(dir, f)
		}
		args = append(args, "--values", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return helm(t, args...)
}

// valueSets are the chart's ci/ values files, each rendered and checked.
var valueSets = []string{"jwks-url-values.yaml", "pem-secret-values.yaml", "monitoring-values.yaml", "observability-values.yaml", "etcd-values.yaml", "etcd-hpa-values.yaml"}

func TestChartLint(t *testing.T) {
	if out, err := helm(t, "lint", "--strict", "--kube-version", kubeVersion, chartDir); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range valueSets {
		if out, err := helm(t, "lint", "--strict", "--kube-version", kubeVersion, "--values", filepath.Join(chartDir, "ci", f), chartDir); err != nil {
			t.Errorf("with %s: %v\n%s", f, err, out)
		}
	}
}

// manifests is one rendering, decoded strictly into API types.
type manifests struct {
	configMaps      []*corev1.ConfigMap
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	statefulSets    []*appsv1.StatefulSet
	deployments     []*appsv1.Deployment
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	pdbs            []*policyv1.PodDisruptionBudget
	netpols         []*networkingv1.NetworkPolicy
	serviceMonitors []*monitoringv1.ServiceMonitor
	promRules       []*monitoringv1.PrometheusRule
	kinds           []string
}

// decodeManifests splits helm's output into documents and decodes each into
// its Kubernetes or prometheus-operator Go type, refusing unknown fields and
// duplicate keys, so a misspelled field fails here rather than being dropped
// silently by the API server. It also checks each object's metadata.
func decodeManifests(t *testing.T, out []byte) *manifests {
	t.Helper()
	m, docs, err := parseManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	for i, js := range docs {
		checkMeta(t, m.kinds[i], js)
	}
	sort.Strings(m.kinds)
	return m
}

func parseManifests(out []byte) (*manifests, [][]byte, error) {
	m := &manifests{}
	var docs [][]byte
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, nil, fmt.Errorf("%v in\n%s", err, doc)
		}
		if string(js) == "null" {
			continue // a document of comments only
		}
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, nil, err
		}
		var obj any
		switch tm.APIVersion + "/" + tm.Kind {
		case "v1/ConfigMap":
			o := &corev1.ConfigMap{}
			m.configMaps, obj = append(m.configMaps, o), o
		case "v1/Service":
			o := &corev1.Service{}
			m.services, obj = append(m.services, o), o
		case "v1/ServiceAccount":
			o := &corev1.ServiceAccount{}
			m.serviceAccounts, obj = append(m.serviceAccounts, o), o
		case "apps/v1/StatefulSet":
			o := &appsv1.StatefulSet{}
			m.statefulSets, obj = append(m.statefulSets, o), o
		case "apps/v1/Deployment":
			o := &appsv1.Deployment{}
			m.deployments, obj = append(m.deployments, o), o
		case "autoscaling/v2/HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			m.hpas, obj = append(m.hpas, o), o
		case "policy/v1/PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			m.pdbs, obj = append(m.pdbs, o), o
		case "networking.k8s.io/v1/NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			m.netpols, obj = append(m.netpols, o), o
		case "monitoring.coreos.com/v1/ServiceMonitor":
			o := &monitoringv1.ServiceMonitor{}
			m.serviceMonitors, obj = append(m.serviceMonitors, o), o
		case "monitoring.coreos.com/v1/PrometheusRule":
			o := &monitoringv1.PrometheusRule{}
			m.promRules, obj = append(m.promRules, o), o
		default:
			return nil, nil, fmt.Errorf("rendered an object the test does not know: %s %s", tm.APIVersion, tm.Kind)
		}
		if err := strictJSON(js, obj); err != nil {
			return nil, nil, fmt.Errorf("%s: %v in\n%s", tm.Kind, err, doc)
		}
		m.kinds = append(m.kinds, tm.Kind)
		docs = append(docs, js)
	}
	return m, docs, nil
}

// TestManifestDecodingIsStrict shows that the decoding above catches the
// mistakes a template edit can make, which kubectl apply (client-side)
// and many API server versions would drop silently.
func TestManifestDecodingIsStrict(t *testing.T) {
	outs := map[string][]byte{}
	for _, v := range []string{"ci/observability-values.yaml", "ci/etcd-values.yaml", "ci/etcd-hpa-values.yaml"} {
		out, err := render(t, []string{v})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := parseManifests(out); err != nil {
			t.Fatalf("the unmodified rendering of %s: %v", v, err)
		}
		outs[v] = out
	}
	tests := []struct{ name, values, old, new, wantErr string }{
		{"misspelled field", "", "appProtocol: grpc", "appProtocl: grpc", `unknown field "spec.ports[0].appProtocl"`},
		{"wrong case", "", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", "readOnlyRootFileSystem"},
		{"field at the wrong level", "", "      terminationGracePeriodSeconds:", "      terminationGracePeriod:", `unknown field "spec.template.spec.terminationGracePeriod"`},
		{"misspelled ServiceMonitor field", "", "scrapeTimeout:", "scrape_timeout:", "scrape_timeout"},
		{"misspelled PrometheusRule field", "", "          for: 15m", "          for_: 15m", "for_"},
		{"wrong type", "", "replicas: 1", "replicas: one", "replicas"},
		{"duplicate key", "", "  serviceName: jwtauthz\n", "  serviceName: jwtauthz\n  serviceName: other\n", "already set"},
		{"misspelled Deployment field", "ci/etcd-values.yaml", "maxSurge: 1", "maxSurge_: 1", `unknown field "spec.strategy.rollingUpdate.maxSurge_"`},
		{"misspelled affinity field", "ci/etcd-values.yaml", "topologyKey:", "topologykey:", "topologykey"},
		{"wrong Deployment replicas type", "ci/etcd-values.yaml", "replicas: 3", "replicas: three", "replicas"},
		{"misspelled HorizontalPodAutoscaler field", "ci/etcd-hpa-values.yaml", "averageUtilization:", "averageUtilisation:", "averageUtilisation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.values == "" {
				tt.values = "ci/observability-values.yaml"
			}
			out := outs[tt.values]
			if !bytes.Contains(out, []byte(tt.old)) {
				t.Fatalf("the rendering no longer contains %q; update the case", tt.old)
			}
			_, _, err := parseManifests(bytes.Replace(out, []byte(tt.old), []byte(tt.new), 1))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one mentioning %q", firstLine(err), tt.wantErr)
			}
		})
	}
}

func firstLine(err error) string {
	if err == nil {
		return "<nil>"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// strictJSON decodes as the API server does with fieldValidation=Strict:
// field names match case-sensitively, and unknown or duplicate fields are
// errors. (encoding/json would match "Replicas" to replicas silently.)
func strictJSON(js []byte, v any) error {
	strictErrs, err := kjson.UnmarshalStrict(js, v)
	if err != nil {
		return err
	}
	return errors.Join(strictErrs...)
}

// checkMeta checks what the API server would: a DNS-1123 name, valid labels,
// and the release's namespace.
func checkMeta(t *testing.T, kind string, js []byte) {
	t.Helper()
	var o struct {
		Metadata struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &o); err != nil {
		t.Fatal(err)
	}
	md := o.Metadata
	if errs := validation.IsDNS1123Subdomain(md.Name); len(errs) > 0 {
		t.Errorf("%s %q: name: %v", kind, md.Name, errs)
	}
	if md.Namespace != namespace {
		t.Errorf("%s %q: namespace = %q, want %q", kind, md.Name, md.Namespace, namespace)
	}
	for k, v := range md.Labels {
		if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
			t.Errorf("%s %q: label %s=%s: %v", kind, md.Name, k, v, errs)
		}
	}
	if md.Labels["app.kubernetes.io/name"] != "jwtauthz" || md.Labels["app.kubernetes.io/instance"] != release {
		t.Errorf("%s %q: missing the standard labels: %v", kind, md.Name, md.Labels)
	}
}

func TestChartRender(t *testing.T) {
	base := []string{"ConfigMap", "PodDisruptionBudget", "Service", "ServiceAccount"}
	tests := []struct {
		name       string
		values     []string // ci/ files
		valuesYAML string   // a values file's content, after values
		set        []string
		workload   string   // StatefulSet (the default) or Deployment
		kinds      []string // beyond base and the workload
		check      func(t *testing.T, m *manifests)
	}{
		{
			name: "default values",
			check: func(t *testing.T, m *manifests) {
				checkKeysVolume(t, m, "jwtauthz-keys", "")
				checkPVC(t, m, "", "1Gi")
				// One pod: the chart adds no anti-affinity of its own.
				if a := m.workload(t).pod.Spec.Affinity; a != nil {
					t.Errorf("affinity = %+v, want none with bolt", a)
				}
				if got := m.pdbs[0].Spec.MaxUnavailable; got == nil || got.String() != "1" {
					t.Errorf("PodDisruptionBudget maxUnavailable = %v, want 1", got)
				}
			},
		},
		{
			name:   "JWKS URL",
			values: []string{"ci/jwks-url-values.yaml"},
			check: func(t *testing.T, m *manifests) {
				checkKeysVolume(t, m, "", "")
				if cfg := configFile(t, m); !strings.Contains(cfg, "jwks_url: https://sso.example.com/") {
					t.Errorf("config.yaml lacks the jwks_url:\n%s", cfg)
				}
			},
		},
		{
			name:   "PEM from a Secret",
			values: []string{"ci/pem-secret-values.yaml"},
			check: func(t *testing.T, m *manifests) {
				checkKeysVolume(t, m, "idp-keys", "partner-keys")
				checkPVC(t, m, "fast-ssd", "5Gi")
				// The admin API is on: a named port on the Service and container.
				if p := servicePort(m.services[0], "grpc-admin"); p == nil || p.Port != 9002 || deref(p.AppProtocol) != "grpc" {
					t.Errorf("Service port grpc-admin = %+v, want 9002 appProtocol grpc", p)
				}
				if !slices.ContainsFunc(container(t, m).Ports, func(p corev1.ContainerPort) bool { return p.Name == "grpc-admin" && p.ContainerPort == 9002 }) {
					t.Error("container has no grpc-admin port 9002")
				}
			},
		},
		{
			name:   "ServiceMonitor and NetworkPolicy",
			values: []string{"ci/monitoring-values.yaml"},
			kinds:  []string{"NetworkPolicy", "ServiceMonitor"},
			check: func(t *testing.T, m *manifests) {
				checkServiceMonitor(t, m)
				np := m.netpols[0]
				if !labelsMatch(np.Spec.PodSelector.MatchLabels, m.workload(t).pod.Labels) {
					t.Error("NetworkPolicy does not select the pod")
				}
				var ports []string
				for _, r := range np.Spec.Ingress {
					for _, p := range r.Ports {
						ports = append(ports, p.Port.String())
						if containerPort(container(t, m), p.Port.String()) == nil {
							t.Errorf("NetworkPolicy admits port %s, which the container does not name", p.Port.String())
						}
					}
					if len(r.From) == 0 {
						t.Errorf("ingress rule for %v admits every source; the values restrict it", r.Ports)
					}
				}
				if got, want := strings.Join(ports, ","), "grpc,http"; got != want {
					t.Errorf("NetworkPolicy ports = %s, want %s", got, want)
				}
				if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || len(np.Spec.Egress) != 2 {
					t.Errorf("NetworkPolicy egress = %v %v, want the two rules from values", np.Spec.PolicyTypes, np.Spec.Egress)
				}
			},
		},
		{
			name:   "dashboard and alerts",
			values: []string{"ci/observability-values.yaml"},
			kinds:  []string{"ConfigMap", "PrometheusRule", "ServiceMonitor"},
			check: func(t *testing.T, m *manifests) {
				checkServiceMonitor(t, m)
				dash := dashboardConfigMap(t, m)
				if dash.Labels["grafana_dashboard"] != "1" || dash.Annotations["grafana_folder"] != "Security" {
					t.Errorf("dashboard ConfigMap labels %v annotations %v: want grafana_dashboard=1, grafana_folder=Security", dash.Labels, dash.Annotations)
				}
				rule := m.promRules[0]
				var alerts []string
				for _, g := range rule.Spec.Groups {
					for _, r := range g.Rules {
						alerts = append(alerts, r.Alert)
						if r.Labels["severity"] == "" || r.Labels["team"] != "platform" {
							t.Errorf("alert %s labels = %v, want severity and team=platform", r.Alert, r.Labels)
						}
						checkAlertTemplates(t, r)
					}
				}
				want := []string{"JWTAuthzDenyRatioHigh", "JWTAuthzDown", "JWTAuthzJWKSRefreshFailing", "JWTAuthzKeysUnavailable", "JWTAuthzNotServing", "JWTAuthzStoreErrors"}
				sort.Strings(alerts)
				if !slices.Equal(alerts, want) {
					t.Errorf("alerts = %v, want %v", alerts, want)
				}
				if !strings.Contains(ruleExpr(t, rule, "JWTAuthzDenyRatioHigh"), "> 0.3") {
					t.Error("JWTAuthzDenyRatioHigh does not use prometheusRule.denyRatio 0.3")
				}
				if !strings.Contains(ruleExpr(t, rule, "JWTAuthzStoreErrors"), `reason="store_unavailable"`) {
					t.Error(`JWTAuthzStoreErrors does not select reason="store_unavailable"`)
				}
				// jwtauthz's own gauge, not kube-state-metrics: it works for
				// either workload and needs no other exporter.
				if got, want := ruleExpr(t, rule, "JWTAuthzNotServing"), `jwtauthz_serving{namespace="jwtauthz", job="jwtauthz"} == 0`; got != want {
					t.Errorf("JWTAuthzNotServing expr = %q, want %q", got, want)
				}
			},
		},
		{
			name: "no persistence, image digest",
			set:  []string{"persistence.enabled=false", "image.digest=sha256:" + strings.Repeat("ab", 32)},
			check: func(t *testing.T, m *manifests) {
				sts := m.statefulSets[0]
				if len(sts.Spec.VolumeClaimTemplates) != 0 {
					t.Error("volumeClaimTemplates rendered with persistence.enabled=false")
				}
				if v := volume(&sts.Spec.Template, "data"); v == nil || v.EmptyDir == nil {
					t.Errorf("data volume = %+v, want an emptyDir", v)
				}
				if got, want := container(t, m).Image, "ghcr.io/jwtauthz/jwtauthz@sha256:"+strings.Repeat("ab", 32); got != want {
					t.Errorf("image = %s, want %s", got, want)
				}
			},
		},
		{
			// The case the etcd backend exists for: store.backend etcd with three
			// replicas renders a Deployment that decodes strictly.
			name:     "etcd, three replicas, TLS and auth",
			values:   []string{"ci/etcd-values.yaml"},
			workload: "Deployment",
			check: func(t *testing.T, m *manifests) {
				d := m.deployments[0]
				if got := deref(d.Spec.Replicas); got != 3 {
					t.Errorf("replicas = %d, want 3", got)
				}
				// A rollout adds a pod before it removes one.
				if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil ||
					ru.MaxUnavailable.String() != "0" || ru.MaxSurge.String() != "1" {
					t.Errorf("strategy = %+v, want RollingUpdate with maxUnavailable 0, maxSurge 1", d.Spec.Strategy)
				}
				checkAntiAffinity(t, m)
				if got := m.pdbs[0].Spec.MaxUnavailable; got == nil || got.String() != "1" {
					t.Errorf("PodDisruptionBudget maxUnavailable = %v, want 1: replicas are evicted one at a time", got)
				}
				checkKeysVolume(t, m, "jwtauthz-keys", "")
				if p := containerPort(container(t, m), "grpc-admin"); p == nil || p.ContainerPort != 9002 {
					t.Errorf("container port grpc-admin = %+v, want 9002", p)
				}

				e := renderedStoreOf(t, m).Etcd
				wantEndpoints := []string{
					"https://etcd-0.etcd-headless.etcd.svc.cluster.local:2379",
					"https://etcd-1.etcd-headless.etcd.svc.cluster.local:2379",
					"https://etcd-2.etcd-headless.etcd.svc.cluster.local:2379",
				}
				if !slices.Equal(e.Endpoints, wantEndpoints) || e.Prefix != "/jwtauthz/prod/" || e.DialTimeout != "3s" {
					t.Errorf("store.etcd endpoints %v prefix %q dial_timeout %q, want %v, /jwtauthz/prod/, 3s", e.Endpoints, e.Prefix, e.DialTimeout, wantEndpoints)
				}
				if e.TLS == nil {
					t.Fatal("store.etcd.tls is missing")
				}
				for _, f := range []struct{ key, path, secretKey string }{
					{"ca_file", e.TLS.CAFile, "ca.crt"},
					{"cert_file", e.TLS.CertFile, "tls.crt"},
					{"key_file", e.TLS.KeyFile, "tls.key"},
				} {
					checkSecretFile(t, m, "store.etcd.tls."+f.key, f.path, "jwtauthz-etcd-tls", f.secretKey)
				}
				if e.Username != "jwtauthz" {
					t.Errorf("store.etcd.username = %q, want jwtauthz", e.Username)
				}
				checkSecretFile(t, m, "store.etcd.password_file", e.PasswordFile, "jwtauthz-etcd-auth", "password")
			},
		},
		{
			name:     "etcd, autoscaled",
			values:   []string{"ci/etcd-hpa-values.yaml"},
			workload: "Deployment",
			kinds:    []string{"HorizontalPodAutoscaler", "PrometheusRule", "ServiceMonitor"},
			check: func(t *testing.T, m *manifests) {
				d := m.deployments[0]
				if d.Spec.Replicas != nil {
					t.Errorf("replicas = %d, want none: the HorizontalPodAutoscaler owns the count", *d.Spec.Replicas)
				}
				hpa := m.hpas[0]
				if ref := hpa.Spec.ScaleTargetRef; ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
					t.Errorf("scaleTargetRef = %+v, want apps/v1 Deployment %s", ref, d.Name)
				}
				if deref(hpa.Spec.MinReplicas) != 3 || hpa.Spec.MaxReplicas != 10 {
					t.Errorf("replicas %d..%d, want 3..10", deref(hpa.Spec.MinReplicas), hpa.Spec.MaxReplicas)
				}
				if ms := hpa.Spec.Metrics; len(ms) != 1 || ms[0].Type != autoscalingv2.ResourceMetricSourceType || ms[0].Resource == nil ||
					ms[0].Resource.Name != corev1.ResourceCPU || ms[0].Resource.Target.Type != autoscalingv2.UtilizationMetricType ||
					deref(ms[0].Resource.Target.AverageUtilization) != 60 {
					t.Errorf("metrics = %+v, want CPU utilization 60%%", ms)
				}
				if container(t, m).Resources.Requests.Cpu().String() != "250m" {
					t.Errorf("cpu request = %v, want 250m (the HPA's utilization is relative to it)", container(t, m).Resources.Requests.Cpu())
				}
				checkAntiAffinity(t, m)
				if got := m.pdbs[0].Spec.MaxUnavailable; got == nil || got.String() != "25%" {
					t.Errorf("PodDisruptionBudget maxUnavailable = %v, want 25%%", got)
				}
				e := renderedStoreOf(t, m).Etcd
				if !slices.Equal(e.Endpoints, []string{"http://etcd.etcd.svc.cluster.local:2379"}) || e.Prefix != "/jwtauthz/" || e.DialTimeout != "5s" {
					t.Errorf("store.etcd = %+v, want the plaintext endpoint with the default prefix and dial_timeout", e)
				}
				if e.TLS != nil || e.Username != "" || e.PasswordFile != "" {
					t.Errorf("store.etcd tls %+v username %q password_file %q, want none", e.TLS, e.Username, e.PasswordFile)
				}
				pod := m.workload(t).pod
				for _, name := range []string{"etcd-tls", "etcd-auth"} {
					if volume(pod, name) != nil || volumeMount(container(t, m), name) != nil {
						t.Errorf("volume %s rendered without its Secret in the values", name)
					}
				}
				rule := m.promRules[0]
				for _, g := range rule.Spec.Groups {
					for _, r := range g.Rules {
						checkAlertTemplates(t, r)
					}
				}
				if desc := ruleAnnotation(t, rule, "JWTAuthzStoreErrors", "description"); !strings.Contains(desc, "etcd") || strings.Contains(desc, "bbolt") {
					t.Errorf("JWTAuthzStoreErrors description speaks of the wrong store: %s", desc)
				}
			},
		},
		{
			name: "etcd, CA only, own affinity",
			set: []string{"store.backend=etcd", "store.etcd.endpoints={https://etcd.example.internal:2379}", "replicaCount=2",
				"store.etcd.tls.existingSecret=etcd-ca", "store.etcd.tls.secretKeys.ca=ca.pem", "store.etcd.tls.secretKeys.cert=", "store.etcd.tls.secretKeys.key="},
			valuesYAML: `affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions:
            - {key: node-role.example.com/auth, operator: Exists}
`,
			workload: "Deployment",
			check: func(t *testing.T, m *manifests) {
				if got := deref(m.deployments[0].Spec.Replicas); got != 2 {
					t.Errorf("replicas = %d, want 2", got)
				}
				a := m.workload(t).pod.Spec.Affinity
				if a == nil || a.NodeAffinity == nil || a.PodAntiAffinity != nil {
					t.Errorf("affinity = %+v, want the values' nodeAffinity in place of the default anti-affinity", a)
				}
				e := renderedStoreOf(t, m).Etcd
				if e.TLS == nil || e.TLS.CertFile != "" || e.TLS.KeyFile != "" {
					t.Fatalf("store.etcd.tls = %+v, want ca_file only", e.TLS)
				}
				checkSecretFile(t, m, "store.etcd.tls.ca_file", e.TLS.CAFile, "etcd-ca", "ca.pem")
				if items := volume(m.workload(t).pod, "etcd-tls").Secret.Items; len(items) != 1 {
					t.Errorf("etcd-tls items = %+v, want the CA only", items)
				}
				if volume(m.workload(t).pod, "etcd-auth") != nil {
					t.Error("etcd-auth volume rendered without store.etcd.auth")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			values := tt.values
			if tt.valuesYAML != "" {
				values = append(slices.Clone(values), writeValues(t, tt.valuesYAML))
			}
			out, err := render(t, values, tt.set...)
			if err != nil {
				t.Fatal(err)
			}
			m := decodeManifests(t, out)
			workload := cmp.Or(tt.workload, "StatefulSet")
			wantKinds := append(append(slices.Clone(base), workload), tt.kinds...)
			sort.Strings(wantKinds)
			if !slices.Equal(m.kinds, wantKinds) {
				t.Fatalf("rendered kinds = %v, want %v", m.kinds, wantKinds)
			}
			checkWorkload(t, m)
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

// workload is a rendering's one pod controller: the StatefulSet (store
// backend bolt) or the Deployment (etcd), which share one pod template.
type workload struct {
	kind     string
	name     string
	replicas *int32
	selector *metav1.LabelSelector
	pod      *corev1.PodTemplateSpec
}

func (m *manifests) workload(t *testing.T) workload {
	t.Helper()
	switch {
	case len(m.statefulSets) == 1 && len(m.deployments) == 0:
		s := m.statefulSets[0]
		return workload{"StatefulSet", s.Name, s.Spec.Replicas, s.Spec.Selector, &s.Spec.Template}
	case len(m.deployments) == 1 && len(m.statefulSets) == 0:
		d := m.deployments[0]
		return workload{"Deployment", d.Name, d.Spec.Replicas, d.Spec.Selector, &d.Spec.Template}
	}
	t.Fatalf("rendered %d StatefulSets and %d Deployments, want one of either", len(m.statefulSets), len(m.deployments))
	return workload{}
}

// renderedStore is the store section of the rendered config.yaml, decoded
// strictly so that a key the chart should not write (store.path with etcd)
// shows up.
type renderedStore struct {
	Backend string  `json:"backend"`
	Path    *string `json:"path"`
	Etcd    *struct {
		Endpoints   []string `json:"endpoints"`
		Prefix      string   `json:"prefix"`
		DialTimeout string   `json:"dial_timeout"`
		TLS         *struct {
			CAFile   string `json:"ca_file"`
			CertFile string `json:"cert_file"`
			KeyFile  string `json:"key_file"`
		} `json:"tls"`
		Username     string `json:"username"`
		PasswordFile string `json:"password_file"`
	} `json:"etcd"`
}

// renderedConfig is the part of the rendered config.yaml the chart sets.
type renderedConfig struct {
	Listen     string          `json:"listen"`
	HTTPListen string          `json:"http_listen"`
	Store      json.RawMessage `json:"store"`
}

func renderedStoreOf(t *testing.T, m *manifests) *renderedStore {
	t.Helper()
	var cfg renderedConfig
	if err := yaml.Unmarshal([]byte(configFile(t, m)), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	var st renderedStore
	if err := strictJSON(cfg.Store, &st); err != nil {
		t.Fatalf("config.yaml store: %v\n%s", err, cfg.Store)
	}
	return &st
}

// checkWorkload asserts what every rendering must hold: the probes, ports,
// security context and mounted config, and per store backend: bolt's single
// replica on its volume, etcd's replicas with no volume and every file its
// config names mounted from a Secret.
func checkWorkload(t *testing.T, m *manifests) {
	t.Helper()
	w := m.workload(t)
	pod := w.pod
	c := container(t, m)
	etcd := w.kind == "Deployment"

	if !labelsMatch(w.selector.MatchLabels, pod.Labels) {
		t.Errorf("%s selector %v does not match the pod labels %v", w.kind, w.selector.MatchLabels, pod.Labels)
	}
	svc := m.services[0]
	if !etcd {
		if deref(w.replicas) != 1 {
			t.Errorf("replicas = %d, want 1", deref(w.replicas))
		}
		if sts := m.statefulSets[0]; sts.Spec.ServiceName != svc.Name {
			t.Errorf("serviceName = %q, want the Service %q", sts.Spec.ServiceName, svc.Name)
		}
	}
	if got, want := c.Image, "ghcr.io/jwtauthz/jwtauthz:"+chartAppVersion(t); got != want && !strings.Contains(got, "@sha256:") {
		t.Errorf("image = %s, want %s", got, want)
	}

	// Probes. Readiness: native gRPC on the gRPC port, naming the
	// Authorization service. Startup and liveness: with bolt, gRPC on "";
	// with etcd, GET /healthz on the http port, so that an etcd that is
	// down at start leaves the pods unready instead of restarting them.
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil {
			t.Errorf("no %s probe", name)
			continue
		}
		handlers := 0
		for _, set := range []bool{p.GRPC != nil, p.HTTPGet != nil, p.TCPSocket != nil, p.Exec != nil} {
			if set {
				handlers++
			}
		}
		if handlers != 1 {
			t.Errorf("%s probe has %d handlers, want 1", name, handlers)
		}
		if etcd && name != "readiness" {
			if p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "http" {
				t.Errorf("%s probe = %+v, want GET /healthz on port http", name, p.ProbeHandler)
			}
			continue
		}
		if p.GRPC == nil {
			t.Errorf("%s probe = %+v, want a grpc probe", name, p.ProbeHandler)
			continue
		}
		if p.GRPC.Port != 9001 {
			t.Errorf("%s probe port = %d, want 9001", name, p.GRPC.Port)
		}
		wantService := ""
		if name == "readiness" {
			wantService = authzHealth
		}
		if got := deref(p.GRPC.Service); got != wantService {
			t.Errorf("%s probe service = %q, want %q", name, got, wantService)
		}
	}

	// Ports, named, with appProtocol on the Service.
	for _, want := range []struct {
		name     string
		port     int32
		protocol string
	}{{"grpc", 9001, "grpc"}, {"http", 9090, "http"}} {
		if p := containerPort(c, want.name); p == nil || p.ContainerPort != want.port {
			t.Errorf("container port %s = %+v, want %d", want.name, p, want.port)
		}
		p := servicePort(svc, want.name)
		if p == nil || p.Port != want.port || p.TargetPort.String() != want.name || deref(p.AppProtocol) != want.protocol {
			t.Errorf("Service port %s = %+v, want port %d, targetPort %s, appProtocol %s", want.name, p, want.port, want.name, want.protocol)
		}
	}
	if !labelsMatch(svc.Spec.Selector, pod.Labels) {
		t.Errorf("Service selector %v does not match the pod labels", svc.Spec.Selector)
	}

	// Hardened pod and container.
	psc := pod.Spec.SecurityContext
	if psc == nil || !deref(psc.RunAsNonRoot) || deref(psc.RunAsUser) != 65532 || deref(psc.FSGroup) != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext = %+v, want runAsNonRoot, runAsUser 65532, fsGroup 65532, seccomp RuntimeDefault", psc)
	}
	csc := c.SecurityContext
	if csc == nil || !deref(csc.ReadOnlyRootFilesystem) || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) > 0 {
		t.Errorf("container securityContext = %+v, want readOnlyRootFilesystem, no privilege escalation, drop ALL", csc)
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token; jwtauthz never calls the API")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources = %+v, want cpu and memory requests and a memory limit", c.Resources)
	}

	// The container runs `jwtauthz serve` (the image's entrypoint) with the
	// mounted config, and the grace period outlasts the drain.
	if len(c.Command) != 0 {
		t.Errorf("command = %v, want none (the image's ENTRYPOINT is jwtauthz serve)", c.Command)
	}
	if !slices.Contains(c.Args, "--config=/etc/jwtauthz/config.yaml") {
		t.Errorf("args = %v, want --config=/etc/jwtauthz/config.yaml", c.Args)
	}
	var drain time.Duration
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--drain="); ok {
			var err error
			if drain, err = time.ParseDuration(v); err != nil {
				t.Errorf("--drain: %v", err)
			}
		}
	}
	if grace := time.Duration(deref(pod.Spec.TerminationGracePeriodSeconds)) * time.Second; drain <= 0 || grace <= drain+10*time.Second {
		t.Errorf("terminationGracePeriodSeconds = %v, --drain = %v: the grace period must outlast the drain and the graceful stop", grace, drain)
	}

	mount := volumeMount(c, "config")
	if mount == nil || mount.MountPath != "/etc/jwtauthz/config.yaml" || mount.SubPath != "config.yaml" || !mount.ReadOnly {
		t.Errorf("config mount = %+v, want config.yaml read-only at /etc/jwtauthz/config.yaml", mount)
	}
	v := volume(pod, "config")
	if v == nil || v.ConfigMap == nil {
		t.Fatalf("config volume = %+v, want a ConfigMap", v)
	}
	cm := configMap(m, v.ConfigMap.Name)
	if cm == nil {
		t.Fatalf("config volume names ConfigMap %q, which the chart does not render", v.ConfigMap.Name)
	}
	var cfg renderedConfig
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	if cfg.Listen != "0.0.0.0:9001" || cfg.HTTPListen != "0.0.0.0:9090" {
		t.Errorf("config.yaml listen %q http_listen %q, want 0.0.0.0:9001, 0.0.0.0:9090", cfg.Listen, cfg.HTTPListen)
	}
	st := renderedStoreOf(t, m)
	if etcd {
		// No volume for the users: no claim, no data volume, and no bbolt
		// path in the config (jwtauthz refuses store.path with etcd).
		if st.Backend != "etcd" || st.Path != nil || st.Etcd == nil || len(st.Etcd.Endpoints) == 0 {
			t.Errorf("config.yaml store: backend %q, path %q (set: %v), etcd %+v; want backend etcd with endpoints and no path", st.Backend, deref(st.Path), st.Path != nil, st.Etcd)
		}
		if volume(pod, "data") != nil || volumeMount(c, "data") != nil {
			t.Error("a data volume is rendered with store.backend etcd")
		}
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil || v.Ephemeral != nil {
				t.Errorf("volume %s claims storage with store.backend etcd", v.Name)
			}
		}
		if st.Etcd != nil {
			// Every file the config names is in the pod, from a Secret.
			files := []string{st.Etcd.PasswordFile}
			if st.Etcd.TLS != nil {
				files = append(files, st.Etcd.TLS.CAFile, st.Etcd.TLS.CertFile, st.Etcd.TLS.KeyFile)
			}
			for _, f := range files {
				if f != "" {
					if _, _, err := secretFile(pod, c, f); err != nil {
						t.Errorf("config.yaml names %s: %v", f, err)
					}
				}
			}
		}
	} else {
		if st.Backend != "bolt" || deref(st.Path) != "/data/jwtauthz.db" || st.Etcd != nil {
			t.Errorf("config.yaml store: backend %q, path %q, etcd %+v; want backend bolt, path /data/jwtauthz.db, no etcd", st.Backend, deref(st.Path), st.Etcd)
		}
		if dm := volumeMount(c, "data"); dm == nil || dm.MountPath != "/data" || dm.ReadOnly {
			t.Errorf("data mount = %+v, want /data, writable", dm)
		}
	}
	if pod.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a config change would not roll the pod")
	}

	pdb := m.pdbs[0]
	if !labelsMatch(pdb.Spec.Selector.MatchLabels, pod.Labels) {
		t.Error("PodDisruptionBudget does not select the pod")
	}
}

// secretFile finds the Secret key that the container sees at path: a
// read-only mount of a Secret volume at path's directory, with an item of
// that file name. It returns the Secret's name and the key.
func secretFile(pod *corev1.PodTemplateSpec, c *corev1.Container, path string) (secret, key string, err error) {
	dir, file := filepath.Split(path)
	dir = strings.TrimSuffix(dir, "/")
	for _, mt := range c.VolumeMounts {
		if mt.MountPath != dir {
			continue
		}
		v := volume(pod, mt.Name)
		if v == nil || v.Secret == nil {
			return "", "", fmt.Errorf("%s is mounted from volume %s, not a Secret", dir, mt.Name)
		}
		if !mt.ReadOnly || mt.SubPath != "" {
			return "", "", fmt.Errorf("mount %+v: want read-only, without subPath", mt)
		}
		if deref(v.Secret.DefaultMode) != 0o440 {
			return "", "", fmt.Errorf("volume %s defaultMode %#o, want 0440 (the pod's group only)", v.Name, deref(v.Secret.DefaultMode))
		}
		for _, it := range v.Secret.Items {
			if it.Path == file {
				return v.Secret.SecretName, it.Key, nil
			}
		}
		return "", "", fmt.Errorf("Secret volume %s (%s) projects no %s: items %+v", v.Name, v.Secret.SecretName, file, v.Secret.Items)
	}
	return "", "", fmt.Errorf("nothing is mounted at %s", dir)
}

// checkSecretFile checks that the config key's file is the Secret's key.
func checkSecretFile(t *testing.T, m *manifests, configKey, path, wantSecret, wantKey string) {
	t.Helper()
	if path == "" {
		t.Errorf("%s is not set", configKey)
		return
	}
	secret, key, err := secretFile(m.workload(t).pod, container(t, m), path)
	if err != nil {
		t.Errorf("%s %s: %v", configKey, path, err)
		return
	}
	if secret != wantSecret || key != wantKey {
		t.Errorf("%s %s comes from Secret %s key %s, want %s key %s", configKey, path, secret, key, wantSecret, wantKey)
	}
}

// checkAntiAffinity checks the default preferred anti-affinity that
// spreads the etcd-backed replicas over nodes.
func checkAntiAffinity(t *testing.T, m *manifests) {
	t.Helper()
	pod := m.workload(t).pod
	a := pod.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatalf("affinity = %+v, want one preferred pod anti-affinity term", a)
	}
	if len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
		t.Error("required pod anti-affinity: replicas beyond the node count would never schedule")
	}
	term := a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0]
	if term.Weight != 100 || term.PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" ||
		term.PodAffinityTerm.LabelSelector == nil || !labelsMatch(term.PodAffinityTerm.LabelSelector.MatchLabels, pod.Labels) {
		t.Errorf("anti-affinity term = %+v, want weight 100 on kubernetes.io/hostname, selecting the pods", term)
	}
}

func checkKeysVolume(t *testing.T, m *manifests, secret, configMap string) {
	t.Helper()
	v, mount := volume(m.workload(t).pod, "keys"), volumeMount(container(t, m), "keys")
	if secret == "" && configMap == "" {
		if v != nil || mount != nil {
			t.Errorf("keys volume %+v mounted at %+v, want none", v, mount)
		}
		return
	}
	if v == nil || v.Projected == nil || mount == nil {
		t.Fatalf("keys volume = %+v, mount = %+v, want a projected volume", v, mount)
	}
	if mount.MountPath != "/etc/jwtauthz/keys" || !mount.ReadOnly {
		t.Errorf("keys mount = %+v, want read-only at /etc/jwtauthz/keys", mount)
	}
	var gotSecret, gotCM string
	for _, s := range v.Projected.Sources {
		if s.Secret != nil {
			gotSecret = s.Secret.Name
		}
		if s.ConfigMap != nil {
			gotCM = s.ConfigMap.Name
		}
	}
	if gotSecret != secret || gotCM != configMap {
		t.Errorf("keys sources: Secret %q ConfigMap %q, want %q %q", gotSecret, gotCM, secret, configMap)
	}
}

func checkPVC(t *testing.T, m *manifests, storageClass, size string) {
	t.Helper()
	vcts := m.statefulSets[0].Spec.VolumeClaimTemplates
	if len(vcts) != 1 || vcts[0].Name != "data" {
		t.Fatalf("volumeClaimTemplates = %v, want one named data", vcts)
	}
	spec := vcts[0].Spec
	if got := spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse(size)) != 0 {
		t.Errorf("storage request = %s, want %s", got.String(), size)
	}
	if got := deref(spec.StorageClassName); got != storageClass {
		t.Errorf("storageClassName = %q, want %q", got, storageClass)
	}
	if !slices.Equal(spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("accessModes = %v, want [ReadWriteOnce]", spec.AccessModes)
	}
}

func checkServiceMonitor(t *testing.T, m *manifests) {
	t.Helper()
	sm := m.serviceMonitors[0]
	if !labelsMatch(sm.Spec.Selector.MatchLabels, m.services[0].Labels) {
		t.Error("ServiceMonitor does not select the Service")
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "http" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints = %+v, want port http, path /metrics", sm.Spec.Endpoints)
	}
}

// checkAlertTemplates parses an alert's annotations as Prometheus does: Go
// templates with $labels and $value defined.
func checkAlertTemplates(t *testing.T, r monitoringv1.Rule) {
	t.Helper()
	funcs := template.FuncMap{"humanize": fmt.Sprint, "humanizePercentage": fmt.Sprint, "humanizeDuration": fmt.Sprint}
	for k, v := range r.Annotations {
		src := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$value := .Value}}" + v
		if _, err := template.New(k).Funcs(funcs).Parse(src); err != nil {
			t.Errorf("alert %s annotation %s: %v", r.Alert, k, err)
		}
	}
}

func ruleAnnotation(t *testing.T, rule *monitoringv1.PrometheusRule, alert, key string) string {
	t.Helper()
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == alert {
				return r.Annotations[key]
			}
		}
	}
	t.Fatalf("no alert %s", alert)
	return ""
}

func ruleExpr(t *testing.T, rule *monitoringv1.PrometheusRule, alert string) string {
	t.Helper()
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == alert {
				return r.Expr.String()
			}
		}
	}
	t.Fatalf("no alert %s", alert)
	return ""
}

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

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func dashboardConfigMap(t *testing.T, m *manifests) *corev1.ConfigMap {
	t.Helper()
	for _, cm := range m.configMaps {
		if strings.HasSuffix(cm.Name, "-dashboard") {
			return cm
		}
	}
	t.Fatal("no dashboard ConfigMap")
	return nil
}

// grafanaVar matches Grafana's variables; range variables become a duration,
// the rest a plain word, so the result is PromQL.
var grafanaVar = regexp.MustCompile(`\$\{?(__rate_interval|__interval|__range|[A-Za-z_]\w*)\}?`)

// promQLMetricNames parses expr with Prometheus's own PromQL parser and
// returns the metric names it selects.
func promQLMetricNames(expr string) ([]string, error) {
	expr = grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		if strings.Contains(v, "__") {
			return "5m"
		}
		return "x"
	})
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", expr, err)
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				err = fmt.Errorf("%q: a selector without a metric name", expr)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, err
}

// monitoringMetricNames renders the dashboard and alerts and returns every
// metric name their PromQL uses, each with where it is used.
func monitoringMetricNames(t *testing.T) map[string][]string {
	t.Helper()
	out, err := render(t, []string{"ci/observability-values.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	m := decodeManifests(t, out)
	used := map[string][]string{}
	add := func(where, expr string) {
		names, err := promQLMetricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
		}
		for _, n := range names {
			used[n] = append(used[n], where)
		}
	}
	for _, g := range m.promRules[0].Spec.Groups {
		for _, r := range g.Rules {
			add("alert "+r.Alert, r.Expr.String())
		}
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(dashboardConfigMap(t, m).Data["jwtauthz.json"]))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	if d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard has no uid or no panels: %+v", d)
	}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			add("panel "+p.Title, tg.Expr)
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		q, _ := v.Query.(map[string]any)
		if v.Type != "query" || q == nil {
			continue
		}
		s, _ := q["query"].(string)
		mm := labelValues.FindStringSubmatch(s)
		if mm == nil {
			t.Errorf("dashboard variable %s: query %q is not label_values(selector, label)", v.Name, s)
			continue
		}
		add("variable "+v.Name, mm[1])
	}
	return used
}

// notFromJWTAuthz are the series the alerts use that Prometheus provides,
// not jwtauthz: scrape health (a dead process exports nothing). NOT_SERVING
// is jwtauthz's own jwtauthz_serving.
var notFromJWTAuthz = map[string]string{
	"up": "Prometheus, per scrape target",
}

// TestMonitoringMetricsExist checks every metric name in the dashboard and
// the alerts against the /metrics of a real jwtauthz that has answered
// Checks and fetched a JWK Set, so every counter vector has a child.
func TestMonitoringMetricsExist(t *testing.T) {
	used := monitoringMetricNames(t)
	exported := scrapeRunningJWTAuthz(t)

	for _, name := range []string{"jwtauthz_checks_total", "jwtauthz_check_duration_seconds_bucket", "jwtauthz_users_created_total", "jwtauthz_jwks_refresh_total", "jwtauthz_token_cache_requests_total", "jwtauthz_serving"} {
		if !exported[name] {
			t.Errorf("jwtauthz does not export %s (the README lists it)", name)
		}
		if len(used[name]) == 0 {
			t.Errorf("the dashboard and alerts never use %s", name)
		}
	}
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case exported[n]:
		case notFromJWTAuthz[n] != "":
			t.Logf("%s: from %s, not jwtauthz", n, notFromJWTAuthz[n])
		default:
			t.Errorf("%s is used by %v but jwtauthz's /metrics has no such series", n, used[n])
		}
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// buildJWTAuthz builds cmd/jwtauthz exactly as the Dockerfile does.
func buildJWTAuthz(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp(helmHome, "bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "jwtauthz")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", binPath, "./cmd/jwtauthz")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// jwtauthzCmd runs the built binary and returns its stdout.
func jwtauthzCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(buildJWTAuthz(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("jwtauthz %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// scrapeRunningJWTAuthz starts `jwtauthz serve` with a PEM provider and a
// JWKS URL provider, sends an allowed and a denied Check, and returns the
// series names on /metrics.
func scrapeRunningJWTAuthz(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	for _, k := range []string{"local", "remote"} {
		if _, err := jwtauthzCmd(t, "keygen", "--alg", "ES256", "--out", filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	jwks, err := os.ReadFile(filepath.Join(dir, "remote", "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer idp.Close()

	cfg := fmt.Sprintf(`listen: 127.0.0.1:0
http_listen: 127.0.0.1:0
store: {path: %s}
providers:
  - name: local
    algorithms: [ES256]
    pem_files: [%s]
  - name: remote
    issuer: https://idp.example.test
    algorithms: [ES256]
    jwks_url: %s
`, filepath.Join(dir, "users.db"), filepath.Join(dir, "local", "public.pem"), idp.URL)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	logs := &lockedBuffer{}
	serve := exec.Command(buildJWTAuthz(t), "serve", "--config", cfgPath, "--log-format", "json", "--drain", "0s")
	serve.Stdout, serve.Stderr = io.Discard, logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	defer func() {
		serve.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			serve.Process.Kill()
			<-exited
		}
	}()

	grpcAddr, httpAddr := servingAddrs(t, logs, exited)
	waitReady(t, "http://"+httpAddr+"/readyz", logs)

	token, err := jwtauthzCmd(t, "mint", "--key", filepath.Join(dir, "local", "private.pem"), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := jwtauthzCmd(t, "check", "--addr", grpcAddr, "--token", strings.TrimSpace(token)); err != nil {
		t.Fatalf("allowed check: %v\n%s", err, out)
	}
	if out, err := jwtauthzCmd(t, "check", "--addr", grpcAddr); err == nil {
		t.Fatalf("check without a token was allowed:\n%s", out)
	} else if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("check without a token: %v, want exit status 1 (deny)", err)
	}

	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	names := map[string]bool{}
	for name, mf := range families {
		if mf.GetHelp() == "" {
			t.Errorf("%s has no # HELP", name)
		}
		names[name] = true
		switch mf.GetType().String() {
		case "HISTOGRAM":
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case "SUMMARY":
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	return names
}

// servingAddrs reads the gRPC and HTTP addresses from serve's start-up log line.
func servingAddrs(t *testing.T, logs *lockedBuffer, exited <-chan error) (grpcAddr, httpAddr string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec struct{ Msg, GRPC, HTTP string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "jwtauthz serving" {
				return rec.GRPC, rec.HTTP
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("serve exited (%v):\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("serve did not log its addresses:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func waitReady(t *testing.T, url string, logs *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200:\n%s", url, logs.String())
}

// TestDockerfile checks that the Dockerfile and the chart agree, and that the
// Dockerfile's build gives the static binary a distroless/static image needs.
// No Docker engine runs here, so the image itself is not built.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	goMod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(goMod))
	for _, want := range []string{
		"FROM golang:" + goVersion[1] + " AS build",
		"CGO_ENABLED=0",
		"go build -trimpath -ldflags='-s -w' -o /out/jwtauthz ./cmd/jwtauthz",
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"COPY --from=build /out/jwtauthz /usr/local/bin/jwtauthz",
		"USER 65532:65532",
		`ENTRYPOINT ["jwtauthz", "serve"]`,
		"VOLUME /data",
		"ENV JWTAUTHZ_CONFIG=/etc/jwtauthz/config.yaml",
		"EXPOSE 9001 9090",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore")); err != nil || !strings.Contains(string(data), ".git") {
		t.Errorf(".dockerignore missing or does not exclude .git: %v", err)
	}

	// The chart's default image is the one this Dockerfile builds, tagged with appVersion.
	var values struct {
		Image struct{ Repository, Tag string }
	}
	vdata, err := os.ReadFile(filepath.Join(repoRoot, chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(vdata, &values); err != nil {
		t.Fatal(err)
	}
	if values.Image.Repository != "ghcr.io/jwtauthz/jwtauthz" || values.Image.Tag != "" {
		t.Errorf("values image = %+v, want ghcr.io/jwtauthz/jwtauthz with the tag from appVersion", values.Image)
	}
	if !strings.Contains(df, "org.opencontainers.image.version="+chartAppVersion(t)) {
		t.Errorf("Dockerfile's image version label is not the chart's appVersion %s", chartAppVersion(t))
	}

	f, err := elf.Open(buildJWTAuthz(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader; distroless/static has none")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v; distroless/static has no libc", libs)
	}
}

func chartAppVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c.AppVersion
}

func configFile(t *testing.T, m *manifests) string {
	t.Helper()
	cm := configMap(m, m.workload(t).name)
	if cm == nil {
		t.Fatal("no config ConfigMap")
	}
	return cm.Data["config.yaml"]
}

func container(t *testing.T, m *manifests) *corev1.Container {
	t.Helper()
	cs := m.workload(t).pod.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("got %d containers, want 1", len(cs))
	}
	return &cs[0]
}

func configMap(m *manifests, name string) *corev1.ConfigMap {
	for _, cm := range m.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

func volume(pod *corev1.PodTemplateSpec, name string) *corev1.Volume {
	for i, v := range pod.Spec.Volumes {
		if v.Name == name {
			return &pod.Spec.Volumes[i]
		}
	}
	return nil
}

func volumeMount(c *corev1.Container, name string) *corev1.VolumeMount {
	for i, v := range c.VolumeMounts {
		if v.Name == name {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func containerPort(c *corev1.Container, name string) *corev1.ContainerPort {
	for i, p := range c.Ports {
		if p.Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

func servicePort(s *corev1.Service, name string) *corev1.ServicePort {
	for i, p := range s.Spec.Ports {
		if p.Name == name {
			return &s.Spec.Ports[i]
		}
	}
	return nil
}

// labelsMatch reports whether every selector label is among labels.
func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
