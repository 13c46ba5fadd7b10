//go:build deploy

package deploy_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1 "istio.io/api/security/v1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// strictProto decodes the proto3 JSON form of an Istio API message and
// refuses unknown fields. client-go's generated Istio types accept unknown
// fields silently, which is how a misspelled failOpen would go unnoticed.
var strictProto = protojson.UnmarshalOptions{DiscardUnknown: false}

// decodeMeshConfig reads istiod Helm values holding only meshConfig.
func decodeMeshConfig(data []byte) (*meshv1alpha1.MeshConfig, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	var values struct {
		MeshConfig json.RawMessage `json:"meshConfig"`
	}
	if err := strictJSON(js, &values); err != nil {
		return nil, err
	}
	var mc meshv1alpha1.MeshConfig
	if err := strictProto.Unmarshal(values.MeshConfig, &mc); err != nil {
		return nil, err
	}
	return &mc, nil
}

// decodeAuthorizationPolicy reads a security.istio.io/v1 AuthorizationPolicy
// manifest: the Kubernetes envelope strictly with encoding/json, the spec
// strictly with protojson.
func decodeAuthorizationPolicy(data []byte) (*metav1.ObjectMeta, *securityv1.AuthorizationPolicy, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, nil, err
	}
	var obj struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        metav1.ObjectMeta `json:"metadata"`
		Spec            json.RawMessage   `json:"spec"`
	}
	if err := strictJSON(js, &obj); err != nil {
		return nil, nil, err
	}
	if obj.APIVersion != "security.istio.io/v1" || obj.Kind != "AuthorizationPolicy" {
		return nil, nil, &wrongKindError{obj.APIVersion, obj.Kind}
	}
	var ap securityv1.AuthorizationPolicy
	if err := strictProto.Unmarshal(obj.Spec, &ap); err != nil {
		return nil, nil, err
	}
	return &obj.Metadata, &ap, nil
}

type wrongKindError struct{ apiVersion, kind string }

func (e *wrongKindError) Error() string {
	return "got " + e.apiVersion + " " + e.kind + ", want security.istio.io/v1 AuthorizationPolicy"
}

func readExample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "examples", "istio", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestIstioExtensionProvider(t *testing.T) {
	mc, err := decodeMeshConfig(readExample(t, "extension-provider.yaml"))
	if err != nil {
		t.Fatalf("extension-provider.yaml: %v", err)
	}
	if len(mc.GetExtensionProviders()) != 1 {
		t.Fatalf("got %d extension providers, want 1", len(mc.GetExtensionProviders()))
	}
	p := mc.GetExtensionProviders()[0]
	g := p.GetEnvoyExtAuthzGrpc()
	if p.GetName() != "jwtauthz" || g == nil {
		t.Fatalf("provider = %v, want envoyExtAuthzGrpc named jwtauthz", p)
	}
	// The chart's Service: release jwtauthz in namespace jwtauthz, gRPC port 9001.
	if g.GetService() != "jwtauthz.jwtauthz.svc.cluster.local" || g.GetPort() != 9001 {
		t.Errorf("service %s port %d, want jwtauthz.jwtauthz.svc.cluster.local 9001", g.GetService(), g.GetPort())
	}
	if d := g.GetTimeout().AsDuration(); d <= 0 || d > 2*time.Second {
		t.Errorf("timeout = %v, want set (Istio's default is 600s), at most 2s", d)
	}
	if g.GetFailOpen() {
		t.Error("failOpen = true: requests would pass unauthenticated when jwtauthz is down")
	}
	if g.GetStatusOnError() != "503" {
		t.Errorf("statusOnError = %q, want 503", g.GetStatusOnError())
	}
	// The mesh's proxies hand jwtauthz paths in normal form (else 400
	// bad_path) and refuse header names with underscores (x_auth_user
	// reaches a WSGI upstream as HTTP_X_AUTH_USER, as x-auth-user does).
	if got := mc.GetPathNormalization().GetNormalization(); got != meshv1alpha1.MeshConfig_ProxyPathNormalization_DECODE_AND_MERGE_SLASHES {
		t.Errorf("pathNormalization.normalization = %v, want DECODE_AND_MERGE_SLASHES", got)
	}
	if got := mc.GetDefaultConfig().GetConnectionSettings().GetHttpHeadersWithUnderscoresAction(); got != meshv1alpha1.ProxyConfig_ConnectionSettings_HEADERS_WITH_UNDERSCORES_REJECT_REQUEST {
		t.Errorf("defaultConfig.connectionSettings.httpHeadersWithUnderscoresAction = %v, want HEADERS_WITH_UNDERSCORES_REJECT_REQUEST", got)
	}
}

func TestIstioAuthorizationPolicy(t *testing.T) {
	md, ap, err := decodeAuthorizationPolicy(readExample(t, "authorization-policy.yaml"))
	if err != nil {
		t.Fatalf("authorization-policy.yaml: %v", err)
	}
	if md.Name == "" || md.Namespace == "" {
		t.Errorf("metadata = %+v, want a name and namespace", md)
	}
	if ap.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		t.Errorf("action = %v, want CUSTOM", ap.GetAction())
	}
	mc, err := decodeMeshConfig(readExample(t, "extension-provider.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ap.GetProvider().GetName(), mc.GetExtensionProviders()[0].GetName(); got != want {
		t.Errorf("provider = %q, want the extension provider %q", got, want)
	}
	if len(ap.GetSelector().GetMatchLabels()) == 0 {
		t.Error("no selector: the policy would apply to every workload in the namespace")
	}
	if len(ap.GetRules()) == 0 {
		t.Error("no rules: a CUSTOM policy without rules never calls the provider")
	}
}

// TestIstioRejectsTypos shows that the strict decoding catches what a
// lenient one would drop.
func TestIstioRejectsTypos(t *testing.T) {
	tests := []struct {
		name, file, old, new, wantErr string
	}{
		{"misspelled provider field", "extension-provider.yaml", "failOpen:", "failopen:", `unknown field "failopen"`},
		{"unknown provider kind", "extension-provider.yaml", "envoyExtAuthzGrpc:", "envoyExtAuthzGRPC:", `unknown field "envoyExtAuthzGRPC"`},
		{"misspelled top-level key", "extension-provider.yaml", "meshConfig:", "meshconfig:", `unknown field "meshconfig"`},
		{"unknown path normalization", "extension-provider.yaml", "normalization: DECODE_AND_MERGE_SLASHES", "normalization: DECODE_AND_MERGE", "DECODE_AND_MERGE"},
		{"misspelled proxy setting", "extension-provider.yaml", "httpHeadersWithUnderscoresAction:", "headersWithUnderscoresAction:", "headersWithUnderscoresAction"},
		{"misspelled policy field", "authorization-policy.yaml", "notPaths:", "notPath:", `unknown field "notPath"`},
		{"unknown action", "authorization-policy.yaml", "\n  action: CUSTOM", "\n  action: EXTERNAL", "EXTERNAL"},
		{"misspelled metadata field", "authorization-policy.yaml", "namespace: my-app", "namespce: my-app", `unknown field "metadata.namespce"`},
		{"older API version", "authorization-policy.yaml", "security.istio.io/v1\n", "security.istio.io/v1alpha1\n", "want security.istio.io/v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := readExample(t, tt.file)
			if !bytes.Contains(orig, []byte(tt.old)) {
				t.Fatalf("%s no longer contains %q; update the case", tt.file, tt.old)
			}
			broken := bytes.Replace(orig, []byte(tt.old), []byte(tt.new), 1)
			var err error
			if strings.HasPrefix(tt.file, "extension") {
				_, err = decodeMeshConfig(broken)
			} else {
				_, _, err = decodeAuthorizationPolicy(broken)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestIstioSnippetsMatch checks that NOTES.txt (as rendered for release
// jwtauthz in namespace jwtauthz) and the chart README show the same Istio
// configuration as examples/istio, and that it decodes as strictly there.
func TestIstioSnippetsMatch(t *testing.T) {
	wantMC, err := decodeMeshConfig(readExample(t, "extension-provider.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wantMD, wantAP, err := decodeAuthorizationPolicy(readExample(t, "authorization-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for source, text := range map[string]string{"NOTES.txt": renderNotes(t, nil), "README.md": string(readme)} {
		mcBlock := snippet(t, source, text, "meshConfig:")
		mc, err := decodeMeshConfig([]byte(mcBlock))
		if err != nil {
			t.Errorf("%s meshConfig: %v\n%s", source, err, mcBlock)
		} else if diff := cmp.Diff(wantMC, mc, protocmp.Transform()); diff != "" {
			t.Errorf("%s meshConfig differs from examples/istio (-example +%s):\n%s", source, source, diff)
		}
		apBlock := snippet(t, source, text, "apiVersion: security.istio.io/v1")
		md, ap, err := decodeAuthorizationPolicy([]byte(apBlock))
		if err != nil {
			t.Errorf("%s AuthorizationPolicy: %v\n%s", source, err, apBlock)
			continue
		}
		if diff := cmp.Diff(wantAP, ap, protocmp.Transform()); diff != "" {
			t.Errorf("%s AuthorizationPolicy differs from examples/istio (-example +%s):\n%s", source, source, diff)
		}
		if md.Name != wantMD.Name || md.Namespace != wantMD.Namespace {
			t.Errorf("%s AuthorizationPolicy is %s/%s, want %s/%s", source, md.Namespace, md.Name, wantMD.Namespace, wantMD.Name)
		}
	}
}

// snippet returns the indented block that starts with the line holding
// start, up to a blank line or a Markdown fence, with its indent removed.
func snippet(t *testing.T, source, text, start string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != start {
			continue
		}
		indent := l[:len(l)-len(strings.TrimLeft(l, " "))]
		var b strings.Builder
		for _, l := range lines[i:] {
			if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "```") {
				break
			}
			if !strings.HasPrefix(l, indent) {
				t.Fatalf("%s: the block after %q is indented less than its first line: %q", source, start, l)
			}
			b.WriteString(strings.TrimPrefix(l, indent) + "\n")
		}
		return b.String()
	}
	t.Fatalf("%s has no line %q", source, start)
	return ""
}

// renderNotes renders NOTES.txt, which `helm template` skips, with the
// values files (relative to the chart) and --set flags: a copy of the chart
// turns it into a named template that a ConfigMap includes.
func renderNotes(t *testing.T, valuesFiles []string, set ...string) string {
	t.Helper()
	dst := copyChart(t, func(rel string, data []byte) (string, []byte) {
		if rel == filepath.Join("templates", "NOTES.txt") {
			return filepath.Join("templates", "_notes.tpl"), append(append([]byte(`{{- define "test.notes" -}}`), data...), []byte(`{{- end -}}`)...)
		}
		return rel, data
	})
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: |-\n    {{- include \"test.notes\" . | nindent 4 }}\n"
	if err := os.WriteFile(filepath.Join(dst, "templates", "notes-test.yaml"), []byte(cm), 0o644); err != nil {
		t.Fatal(err)
	}
	files := make([]string, len(valuesFiles))
	for i, f := range valuesFiles {
		files[i] = f
		if !filepath.IsAbs(f) {
			files[i] = filepath.Join(dst, f)
		}
	}
	args := []string{"template", release, dst, "--namespace", namespace, "--kube-version", kubeVersion, "--show-only", "templates/notes-test.yaml"}
	for _, f := range files {
		args = append(args, "--values", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(out, &obj); err != nil {
		t.Fatal(err)
	}
	return obj.Data["notes"]
}
