//go:build deploy

package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

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

// add appends a new, empty T to list and returns it for decoding into.
func add[T any](list *[]*T) *T {
	o := new(T)
	*list = append(*list, o)
	return o
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
			obj = add(&m.configMaps)
		case "v1/Service":
			obj = add(&m.services)
		case "v1/ServiceAccount":
			obj = add(&m.serviceAccounts)
		case "apps/v1/StatefulSet":
			obj = add(&m.statefulSets)
		case "apps/v1/Deployment":
			obj = add(&m.deployments)
		case "autoscaling/v2/HorizontalPodAutoscaler":
			obj = add(&m.hpas)
		case "policy/v1/PodDisruptionBudget":
			obj = add(&m.pdbs)
		case "networking.k8s.io/v1/NetworkPolicy":
			obj = add(&m.netpols)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			obj = add(&m.serviceMonitors)
		case "monitoring.coreos.com/v1/PrometheusRule":
			obj = add(&m.promRules)
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
		{"misspelled PrometheusRule field", "", "          for: 10m", "          for_: 10m", "for_"},
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

func configFile(t *testing.T, m *manifests) string {
	t.Helper()
	cm := configMap(m, m.workload(t).name)
	if cm == nil {
		t.Fatal("no config ConfigMap")
	}
	return cm.Data["config.yaml"]
}

// service returns the rendered Service named name.
func (m *manifests) service(t *testing.T, name string) *corev1.Service {
	t.Helper()
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
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

// byName returns the element of list that nameOf calls name, or nil.
func byName[T any](list []T, name string, nameOf func(*T) string) *T {
	for i := range list {
		if nameOf(&list[i]) == name {
			return &list[i]
		}
	}
	return nil
}

func volume(pod *corev1.PodTemplateSpec, name string) *corev1.Volume {
	return byName(pod.Spec.Volumes, name, func(v *corev1.Volume) string { return v.Name })
}

func volumeMount(c *corev1.Container, name string) *corev1.VolumeMount {
	return byName(c.VolumeMounts, name, func(m *corev1.VolumeMount) string { return m.Name })
}

// envVar returns the container's environment variable name, or nil.
func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	return byName(c.Env, name, func(e *corev1.EnvVar) string { return e.Name })
}

func containerPort(c *corev1.Container, name string) *corev1.ContainerPort {
	return byName(c.Ports, name, func(p *corev1.ContainerPort) string { return p.Name })
}

func servicePort(s *corev1.Service, name string) *corev1.ServicePort {
	return byName(s.Spec.Ports, name, func(p *corev1.ServicePort) string { return p.Name })
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
