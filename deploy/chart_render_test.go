//go:build deploy

package deploy_test

import (
	"cmp"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/jwtauthz/jwtauthz/config"
)

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
			// Keys by discovery only: the default Secret is not mounted, so
			// the pod does not wait for a Secret nobody needs.
			name:   "discovery and routes",
			values: []string{"ci/routes-values.yaml"},
			check: func(t *testing.T, m *manifests) {
				checkKeysVolume(t, m, "", "")
			},
		},
		{
			// A Secret named on purpose is mounted even when no provider
			// reads a file from it.
			name:   "JWKS URL, a Secret named anyway",
			values: []string{"ci/jwks-url-values.yaml"},
			set:    []string{"keys.secretName=idp-extra"},
			check: func(t *testing.T, m *manifests) {
				checkKeysVolume(t, m, "idp-extra", "")
			},
		},
		{
			// The default Secret is mounted as soon as one file is read.
			name:       "JWKS URL and a claims schema",
			values:     []string{"ci/jwks-url-values.yaml"},
			valuesYAML: "config:\n  providers:\n    - {name: idp, algorithms: [RS256], jwks_url: 'https://idp.example/jwks', claims_schema: /etc/jwtauthz/keys/schema.json}\n",
			check: func(t *testing.T, m *manifests) {
				checkKeysVolume(t, m, "jwtauthz-keys", "")
			},
		},
		{
			name:   "PEM from a Secret",
			values: []string{"ci/pem-secret-values.yaml"},
			check: func(t *testing.T, m *manifests) {
				checkKeysVolume(t, m, "idp-keys", "partner-keys")
				checkPVC(t, m, "fast-ssd", "5Gi")
				// The admin API is on: a named port on the Service and container.
				if p := servicePort(m.service(t, release), "grpc-admin"); p == nil || p.Port != 9002 || deref(p.AppProtocol) != "grpc" {
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
				want := []string{"JWTAuthzConfigReloadFailing", "JWTAuthzDenyRatioHigh", "JWTAuthzDown", "JWTAuthzJWKSRefreshFailing", "JWTAuthzKeysUnavailable", "JWTAuthzNotServing", "JWTAuthzStoreErrors"}
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
			name: "tracing to a Collector",
			valuesYAML: `tracing:
  enabled: true
  otlp:
    endpoint: http://otel-collector.observability.svc.cluster.local:4317
    headersSecret: otlp-auth
  sampler: parentbased_traceidratio
  samplerArg: "0.1"
  resourceAttributes: deployment.environment.name=prod
extraEnv:
  - {name: OTEL_BSP_MAX_QUEUE_SIZE, value: "4096"}
`,
			check: func(t *testing.T, m *manifests) {
				if !loadedConfig(t, m).Tracing.Enabled {
					t.Error("config.yaml: tracing.enabled is not true")
				}
				c := container(t, m)
				for name, want := range map[string]string{
					"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability.svc.cluster.local:4317",
					"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
					"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
					"OTEL_TRACES_SAMPLER_ARG":     "0.1",
					"OTEL_RESOURCE_ATTRIBUTES":    "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),deployment.environment.name=prod",
					"OTEL_BSP_MAX_QUEUE_SIZE":     "4096",
				} {
					if e := envVar(c, name); e == nil || e.Value != want {
						t.Errorf("env %s = %+v, want %q", name, e, want)
					}
				}
				// $(POD_NAME) and $(POD_NAMESPACE) expand only from variables
				// defined before the one that uses them.
				pos := map[string]int{}
				for i, e := range c.Env {
					pos[e.Name] = i
				}
				for _, v := range []struct{ name, field string }{{"POD_NAME", "metadata.name"}, {"POD_NAMESPACE", "metadata.namespace"}} {
					e := envVar(c, v.name)
					if e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != v.field || pos[v.name] > pos["OTEL_RESOURCE_ATTRIBUTES"] {
						t.Errorf("env %s = %+v, want fieldRef %s before OTEL_RESOURCE_ATTRIBUTES", v.name, e, v.field)
					}
				}
				if e := envVar(c, "OTEL_EXPORTER_OTLP_HEADERS"); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
					e.ValueFrom.SecretKeyRef.Name != "otlp-auth" || e.ValueFrom.SecretKeyRef.Key != "headers" {
					t.Errorf("env OTEL_EXPORTER_OTLP_HEADERS = %+v, want Secret otlp-auth key headers", e)
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
			kinds:    []string{"Service"}, // the headless one
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

				e := etcdOf(t, loadedConfig(t, m))
				if !slices.Equal(e.Endpoints, etcdValuesEndpoints) || e.Prefix != "/jwtauthz/prod/" || e.DialTimeout != 3*time.Second {
					t.Errorf("store.etcd endpoints %v prefix %q dial_timeout %v, want %v, /jwtauthz/prod/, 3s", e.Endpoints, e.Prefix, e.DialTimeout, etcdValuesEndpoints)
				}
				if e.TLS == (config.EtcdTLS{}) {
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
				e := etcdOf(t, loadedConfig(t, m))
				if !slices.Equal(e.Endpoints, []string{"http://etcd.etcd.svc.cluster.local:2379"}) || e.Prefix != "/jwtauthz/" || e.DialTimeout != 5*time.Second {
					t.Errorf("store.etcd = %+v, want the plaintext endpoint with the default prefix and dial_timeout", e)
				}
				if e.TLS != (config.EtcdTLS{}) || e.Username != "" || e.PasswordFile != "" {
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
			// A standalone Envoy's STRICT_DNS cluster sees every replica.
			name:     "etcd, headless Service",
			values:   []string{"ci/etcd-hpa-values.yaml"},
			set:      []string{"service.headless.enabled=true"},
			workload: "Deployment",
			kinds:    []string{"HorizontalPodAutoscaler", "PrometheusRule", "Service", "ServiceMonitor"},
			check: func(t *testing.T, m *manifests) {
				h := m.service(t, release+"-headless")
				if h.Spec.ClusterIP != corev1.ClusterIPNone || h.Spec.PublishNotReadyAddresses || h.Spec.Type != "" && h.Spec.Type != corev1.ServiceTypeClusterIP {
					t.Errorf("headless Service spec = %+v, want clusterIP None, type ClusterIP, only Ready pods", h.Spec)
				}
				if !labelsMatch(h.Spec.Selector, m.workload(t).pod.Labels) {
					t.Errorf("headless Service selector %v does not match the pod labels", h.Spec.Selector)
				}
				if ps := h.Spec.Ports; len(ps) != 1 || ps[0].Name != "grpc" || ps[0].Port != 9001 || ps[0].TargetPort.String() != "grpc" || deref(ps[0].AppProtocol) != "grpc" {
					t.Errorf("headless Service ports = %+v, want grpc 9001 only", ps)
				}
				// The ServiceMonitor selects both Services by their labels, but
				// scrapes its port on one only: the pods are scraped once.
				sm := m.serviceMonitors[0]
				var scraped []string
				for _, svc := range m.services {
					if labelsMatch(sm.Spec.Selector.MatchLabels, svc.Labels) && servicePort(svc, sm.Spec.Endpoints[0].Port) != nil {
						scraped = append(scraped, svc.Name)
					}
				}
				if !slices.Equal(scraped, []string{release}) {
					t.Errorf("the ServiceMonitor scrapes through Services %v, want only %s", scraped, release)
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
				e := etcdOf(t, loadedConfig(t, m))
				if e.TLS.CAFile == "" || e.TLS.CertFile != "" || e.TLS.KeyFile != "" {
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

// authzHealth is the gRPC health service the readiness probe names.
const authzHealth = "envoy.service.auth.v3.Authorization"

// configPath is where the pod reads its config file, in the mounted
// ConfigMap's directory.
const configPath = "/etc/jwtauthz/config/config.yaml"

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
	svc := m.service(t, release)
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
	// Tracing is off unless asked for, and then set up by both the config
	// and the OTEL_* variables.
	if tracing := envVar(c, "OTEL_EXPORTER_OTLP_PROTOCOL") != nil; tracing != loadedConfig(t, m).Tracing.Enabled {
		t.Errorf("OTEL_* variables set: %v, but config tracing.enabled: %v", tracing, !tracing)
	}
	// The memory limit reaches jwtauthz in bytes, for its GOMEMLIMIT.
	if e := envVar(c, "JWTAUTHZ_MEMORY_LIMIT"); e == nil || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil ||
		e.ValueFrom.ResourceFieldRef.Resource != "limits.memory" || e.ValueFrom.ResourceFieldRef.Divisor.String() != "1" ||
		(e.ValueFrom.ResourceFieldRef.ContainerName != "" && e.ValueFrom.ResourceFieldRef.ContainerName != c.Name) {
		t.Errorf("JWTAUTHZ_MEMORY_LIMIT = %+v, want resourceFieldRef limits.memory with divisor 1 (bytes)", e)
	}

	// The container runs `jwtauthz serve` (the image's entrypoint) with the
	// mounted config, and the grace period outlasts the drain.
	if len(c.Command) != 0 {
		t.Errorf("command = %v, want none (the image's ENTRYPOINT is jwtauthz serve)", c.Command)
	}
	if !slices.Contains(c.Args, "--config="+configPath) {
		t.Errorf("args = %v, want --config=%s", c.Args, configPath)
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

	// The config's directory, not a subPath: the kubelet updates a
	// ConfigMap volume in place, which jwtauthz reloads, but never a
	// subPath mount.
	mount := volumeMount(c, "config")
	if mount == nil || mount.MountPath != filepath.Dir(configPath) || mount.SubPath != "" || !mount.ReadOnly {
		t.Errorf("config mount = %+v, want the ConfigMap read-only at %s, without subPath", mount, filepath.Dir(configPath))
	}
	v := volume(pod, "config")
	if v == nil || v.ConfigMap == nil {
		t.Fatalf("config volume = %+v, want a ConfigMap", v)
	}
	cm := configMap(m, v.ConfigMap.Name)
	if cm == nil {
		t.Fatalf("config volume names ConfigMap %q, which the chart does not render", v.ConfigMap.Name)
	}
	cfg := parseConfig(t, cm.Data["config.yaml"])
	if cfg.Listen != "0.0.0.0:9001" || cfg.HTTPListen != "0.0.0.0:9090" {
		t.Errorf("config.yaml listen %q http_listen %q, want 0.0.0.0:9001, 0.0.0.0:9090", cfg.Listen, cfg.HTTPListen)
	}
	st := cfg.Store
	if etcd {
		// No volume for the users: no claim, no data volume, and no bbolt
		// path in the config (jwtauthz refuses store.path with etcd).
		hasPath := writesStorePath(t, cm.Data["config.yaml"])
		if st.Backend != config.BackendEtcd || hasPath || st.Etcd == nil || len(st.Etcd.Endpoints) == 0 {
			t.Errorf("config.yaml store: backend %q, path %q (set: %v), etcd %+v; want backend etcd with endpoints and no path", st.Backend, st.Path, hasPath, st.Etcd)
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
			tls := st.Etcd.TLS
			files := []string{st.Etcd.PasswordFile, tls.CAFile, tls.CertFile, tls.KeyFile}
			for _, f := range files {
				if f != "" {
					if _, _, err := secretFile(pod, c, f); err != nil {
						t.Errorf("config.yaml names %s: %v", f, err)
					}
				}
			}
		}
	} else {
		if st.Backend != config.BackendBolt || st.Path != "/data/jwtauthz.db" || st.Etcd != nil {
			t.Errorf("config.yaml store: backend %q, path %q, etcd %+v; want backend bolt, path /data/jwtauthz.db, no etcd", st.Backend, st.Path, st.Etcd)
		}
		if dm := volumeMount(c, "data"); dm == nil || dm.MountPath != "/data" || dm.ReadOnly {
			t.Errorf("data mount = %+v, want /data, writable", dm)
		}
	}
	// Nothing on the pod template changes with the config or the chart's
	// version (TestPodTemplateStable renders both).
	for k := range pod.Annotations {
		if strings.HasPrefix(k, "checksum/") {
			t.Errorf("pod annotation %s: a config change would restart the pods, which reload it in place", k)
		}
	}
	for _, k := range []string{"helm.sh/chart", "app.kubernetes.io/version"} {
		if _, ok := pod.Labels[k]; ok {
			t.Errorf("pod label %s: a chart or app version bump would restart the pods for nothing", k)
		}
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

// TestPodTemplateStable checks that what jwtauthz reloads in place (the
// config) and what concerns the chart alone (its version) leave the pod
// template as it was, so that a helm upgrade changing only them restarts
// no pod; and that the image, which does need new pods, changes it.
func TestPodTemplateStable(t *testing.T) {
	podTemplate := func(t *testing.T, dir string, values []string, set ...string) *corev1.PodTemplateSpec {
		t.Helper()
		out, err := renderChartDir(t, dir, values, set...)
		if err != nil {
			t.Fatal(err)
		}
		return decodeManifests(t, out).workload(t).pod
	}
	base := podTemplate(t, chartDir, nil)
	bumped := copyChart(t, func(rel string, data []byte) (string, []byte) {
		if rel == "Chart.yaml" {
			data = regexp.MustCompile(`(?m)^version: .*$`).ReplaceAll(data, []byte("version: 99.0.0"))
		}
		return rel, data
	})
	newConfig := writeValues(t, `config:
  cache: {max_entries: 5}
  providers:
    - name: default
      algorithms: [RS512, PS512]
      pem_files: [/etc/jwtauthz/keys/public.pem, /etc/jwtauthz/keys/public-next.pem]
      leeway: 1m
  routes:
    - {name: health, match: {paths: [/healthz]}, auth: none}
  default_route: {mode: dry_run}
`)
	for _, tt := range []struct {
		name   string
		dir    string
		values []string
	}{
		{"config change", chartDir, []string{newConfig}},
		{"chart version bump", bumped, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if diff := gocmp.Diff(base, podTemplate(t, tt.dir, tt.values)); diff != "" {
				t.Errorf("the pod template changed, which would restart every pod (-before +after):\n%s", diff)
			}
		})
	}
	t.Run("image change", func(t *testing.T) {
		if gocmp.Equal(base, podTemplate(t, chartDir, nil, "image.tag=9.9.9")) {
			t.Error("a new image tag left the pod template unchanged")
		}
	})
}

// TestChartMemoryFitsMeasuredRSS: the default memory request holds the RSS
// docs/performance.md measured with the default cache full (100,000 cached
// tokens) and 100,000 known users, GOMEMLIMIT unset: 269.0 MB at its peak.
// The Go memory limit the chart derives (90% of the limit) is above it too.
func TestChartMemoryFitsMeasuredRSS(t *testing.T) {
	const measuredPeakRSS = 269_000_000
	out, err := render(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := container(t, decodeManifests(t, out))
	req, limit := c.Resources.Requests.Memory().Value(), c.Resources.Limits.Memory().Value()
	if req < measuredPeakRSS {
		t.Errorf("memory request %d bytes, under the measured peak RSS %d", req, measuredPeakRSS)
	}
	if gomemlimit := limit / 10 * 9; gomemlimit < req || limit < req {
		t.Errorf("memory limit %d bytes (GOMEMLIMIT %d) under the request %d", limit, gomemlimit, req)
	}
}
