//go:build deploy

// Package deploy_test checks the deployment artifacts at the top of the
// repository (envoy.yaml, charts/jwtauthz, examples/istio, Dockerfile)
// against the real schemas: Envoy's protos, the Kubernetes and
// prometheus-operator API types, Istio's protos and the real helm binary.
// No Envoy, cluster or Docker engine is needed.
package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// The typed_config types envoy.yaml uses must be linked in so that
// protoregistry.GlobalTypes resolves their "@type". Referencing them (rather
// than a blank import) also lets the assertions below unpack them.
var (
	_ = (*hcmv3.HttpConnectionManager)(nil)
	_ = (*extauthzv3.ExtAuthz)(nil)
	_ = (*routerv3.Router)(nil)
	_ = (*upstreamhttpv3.HttpProtocolOptions)(nil)
)

// repoRoot is the repository's top directory; tests run in deploy/.
const repoRoot = ".."

// loadBootstrap decodes an Envoy bootstrap the way Envoy reads it: YAML,
// then the proto3 JSON mapping with every Any resolved; unknown fields and
// unknown @types are errors. It then runs the protoc-gen-validate rules on
// the bootstrap and on the contents of every Any, which ValidateAll on the
// outer message does not descend into.
func loadBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var b bootstrapv3.Bootstrap
	opts := protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: protoregistry.GlobalTypes}
	if err := opts.Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("protojson: %w", err)
	}
	if err := validateTree(&b, "bootstrap"); err != nil {
		return nil, err
	}
	return &b, nil
}

type validator interface{ ValidateAll() error }

// validateTree validates m and every message below it, unpacking Anys.
func validateTree(m proto.Message, path string) error {
	v, ok := m.(validator)
	if !ok {
		return fmt.Errorf("%s: %s has no generated validation", path, m.ProtoReflect().Descriptor().FullName())
	}
	if err := v.ValidateAll(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return walkAnys(m.ProtoReflect(), path)
}

// walkAnys finds every google.protobuf.Any under msg, unpacks it with the
// global registry and validates what it holds.
func walkAnys(msg protoreflect.Message, path string) error {
	if a, ok := msg.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
		}
		return validateTree(inner, path+"("+string(inner.ProtoReflect().Descriptor().FullName())+")")
	}
	var err error
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = walkAnys(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = walkAnys(mv.Message(), fmt.Sprintf("%s[%s]", p, k.String()))
				return err == nil
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			err = walkAnys(v.Message(), p)
		}
		return err == nil
	})
	return err
}

func readEnvoyYAML(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestEnvoyBootstrap(t *testing.T) {
	b, err := loadBootstrap(readEnvoyYAML(t))
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}

	if got, want := socketAddr(b.GetAdmin().GetAddress()), "127.0.0.1:9901"; got != want {
		t.Errorf("admin address = %s, want %s", got, want)
	}
	ls := b.GetStaticResources().GetListeners()
	if len(ls) != 1 {
		t.Fatalf("got %d listeners, want 1", len(ls))
	}
	if got, want := socketAddr(ls[0].GetAddress()), "0.0.0.0:8080"; got != want {
		t.Errorf("listener address = %s, want %s", got, want)
	}
	hcm := envoyHTTPConnectionManager(t, b)
	vhosts := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhosts) != 1 {
		t.Fatalf("got %d virtual hosts, want 1", len(vhosts))
	}
	for _, r := range vhosts[0].GetRoutes() {
		if r.GetRoute().GetCluster() != "upstream" {
			t.Errorf("route %v does not go to cluster upstream", r.GetMatch())
		}
	}

	// Paths reach ext_authz in normal form, so jwtauthz's 400 bad_path is
	// never what a real client meets, and no header name has an underscore.
	if !hcm.GetNormalizePath().GetValue() {
		t.Error("normalize_path is not true: a /a/../b path would reach jwtauthz as sent (400 bad_path)")
	}
	if !hcm.GetMergeSlashes() {
		t.Error("merge_slashes is not true: a // path would reach jwtauthz as sent (400 bad_path)")
	}
	if got := hcm.GetPathWithEscapedSlashesAction(); got != hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT {
		t.Errorf("path_with_escaped_slashes_action = %v, want UNESCAPE_AND_REDIRECT", got)
	}
	if got := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); got != corev3.HttpProtocolOptions_REJECT_REQUEST {
		t.Errorf("common_http_protocol_options.headers_with_underscores_action = %v, want REJECT_REQUEST (x_auth_user would reach a WSGI upstream as HTTP_X_AUTH_USER)", got)
	}

	// ext_authz first, the router last: nothing is routed unauthorized.
	hf := hcm.GetHttpFilters()
	var names []string
	for _, f := range hf {
		names = append(names, f.GetName())
	}
	if got, want := strings.Join(names, ","), "envoy.filters.http.ext_authz,envoy.filters.http.router"; got != want {
		t.Fatalf("http filters = %s, want %s", got, want)
	}
	var ea extauthzv3.ExtAuthz
	if err := hf[0].GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatal(err)
	}
	if got := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != "jwtauthz" {
		t.Errorf("ext_authz cluster = %q, want jwtauthz", got)
	}
	if d := ea.GetGrpcService().GetTimeout().AsDuration(); d <= 0 || d > 2e9 {
		t.Errorf("ext_authz timeout = %v, want set, at most 2s", d)
	}
	if got := ea.GetTransportApiVersion(); got != corev3.ApiVersion_V3 {
		t.Errorf("transport_api_version = %v, want V3", got)
	}
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow = true: jwtauthz must fail closed")
	}
	if got := ea.GetStatusOnError().GetCode(); got != typev3.StatusCode_ServiceUnavailable {
		t.Errorf("status_on_error = %v, want ServiceUnavailable (503)", got)
	}
	var router routerv3.Router
	if err := hf[1].GetTypedConfig().UnmarshalTo(&router); err != nil {
		t.Errorf("router typed_config: %v", err)
	}

	// Per-route settings of ext_authz: context_extensions that pick a
	// jwtauthz route, and no route that turns ext_authz off (jwtauthz's
	// auth: none does that, and still strips spoofed identity headers).
	exts := envoyContextExtensions(t, hcm)
	if got := exts["/billing"]["route"]; got != "billing" {
		t.Errorf("route /billing context_extensions = %v, want route: billing", exts["/billing"])
	}

	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	authz := clusters["jwtauthz"]
	if authz == nil {
		t.Fatal("no cluster jwtauthz")
	}
	if got, want := clusterEndpoints(authz), "127.0.0.1:9001"; got != want {
		t.Errorf("cluster jwtauthz endpoints = %s, want %s (jwtauthz's default listen)", got, want)
	}
	var po upstreamhttpv3.HttpProtocolOptions
	anyPO := authz.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if anyPO == nil {
		t.Fatal("cluster jwtauthz has no HttpProtocolOptions: gRPC needs HTTP/2")
	}
	if err := anyPO.UnmarshalTo(&po); err != nil {
		t.Fatal(err)
	}
	if po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("cluster jwtauthz is not explicitly HTTP/2")
	}
	var grpcHC bool
	for _, hc := range authz.GetHealthChecks() {
		if g := hc.GetGrpcHealthCheck(); g != nil && g.GetServiceName() == "envoy.service.auth.v3.Authorization" {
			grpcHC = true
		}
	}
	if !grpcHC {
		t.Error("cluster jwtauthz has no gRPC health check for envoy.service.auth.v3.Authorization")
	}
	if up := clusters["upstream"]; up == nil || clusterEndpoints(up) != "127.0.0.1:8000" {
		t.Errorf("cluster upstream endpoints = %q, want 127.0.0.1:8000", clusterEndpoints(up))
	}
}

// TestEnvoyBootstrapRejects shows the loader is strict: each case breaks
// envoy.yaml the way a hand edit might, and loading must fail with an error
// that names the problem.
func TestEnvoyBootstrapRejects(t *testing.T) {
	orig := readEnvoyYAML(t)
	tests := []struct {
		name, old, new, wantErr string
	}{
		{"misspelled field", "failure_mode_allow:", "failure_mode_alow:", `unknown field "failure_mode_alow"`},
		{"misspelled field in bootstrap", "connect_timeout: 0.25s", "connect_timeuot: 0.25s", `unknown field "connect_timeuot"`},
		{"unknown filter type", "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz", "envoy.extensions.filters.http.ext_authz.v3.ExtAuth", "ext_authz.v3.ExtAuth"},
		{"unknown enum value", "transport_api_version: V3", "transport_api_version: V4", "V4"},
		{"duplicate key", "stat_prefix: ingress_http", "stat_prefix: ingress_http\n                stat_prefix: again", `key "stat_prefix" already set`},
		{"invalid value in bootstrap", "port_value: 8080", "port_value: 80800", "PortValue"},
		{"invalid value inside a typed_config", "{code: ServiceUnavailable}", "{code: Empty}", "ExtAuthz"},
		{"misspelled per-route field", "check_settings:", "check_setting:", `unknown field "check_setting"`},
		{"unknown enum value of the HttpConnectionManager", "UNESCAPE_AND_REDIRECT", "UNESCAPE_AND_REDIRCT", "UNESCAPE_AND_REDIRCT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(orig, []byte(tt.old)) {
				t.Fatalf("envoy.yaml no longer contains %q; update the case", tt.old)
			}
			broken := bytes.Replace(orig, []byte(tt.old), []byte(tt.new), 1)
			_, err := loadBootstrap(broken)
			if err == nil {
				t.Fatal("loadBootstrap accepted the broken file")
			}
			t.Logf("rejected: %v", err)
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestEnvoyHeadlessCluster checks the chart README's STRICT_DNS cluster for
// the headless Service: a valid Envoy cluster, strictly decoded, that
// names the Service the chart renders, on its gRPC port, over HTTP/2, with
// the gRPC health check every replica answers.
func TestEnvoyHeadlessCluster(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(repoRoot, chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := snippet(t, "README.md", string(readme), "# Envoy: static_resources.clusters[], for release jwtauthz in namespace jwtauthz")
	js, err := yaml.YAMLToJSONStrict([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	var c clusterv3.Cluster
	if err := (protojson.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}).Unmarshal(js, &c); err != nil {
		t.Fatalf("README cluster: %v\n%s", err, block)
	}
	if err := validateTree(&c, "cluster"); err != nil {
		t.Fatal(err)
	}

	out, err := render(t, []string{"ci/etcd-values.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	h := decodeManifests(t, out).service(t, release+"-headless")
	want := fmt.Sprintf("%s.%s.svc.cluster.local:%d", h.Name, namespace, servicePort(h, "grpc").Port)
	if got := clusterEndpoints(&c); got != want {
		t.Errorf("cluster endpoint = %s, want the headless Service %s", got, want)
	}
	if c.GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("cluster type = %v, want STRICT_DNS (one endpoint per pod IP)", c.GetType())
	}
	var po upstreamhttpv3.HttpProtocolOptions
	if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&po); err != nil || po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster is not explicitly HTTP/2 (gRPC needs it): %v", err)
	}
	if hcs := c.GetHealthChecks(); len(hcs) != 1 || hcs[0].GetGrpcHealthCheck().GetServiceName() != authzHealth {
		t.Errorf("health checks = %v, want grpc.health.v1 for %s", hcs, authzHealth)
	}
}

// TestEnvoyReadmeSnippets checks that the chart README's Envoy snippets
// decode strictly (field names, enum values, typed configs) and say what
// envoy.yaml does: the HttpConnectionManager's path and header settings,
// and the /billing route with its context_extensions.
func TestEnvoyReadmeSnippets(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot, chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadBootstrap(readEnvoyYAML(t))
	if err != nil {
		t.Fatal(err)
	}
	want := envoyHTTPConnectionManager(t, b)
	strict := protojson.UnmarshalOptions{Resolver: protoregistry.GlobalTypes}

	js, err := yaml.YAMLToJSONStrict([]byte(snippet(t, "README.md", string(readme), "# HttpConnectionManager")))
	if err != nil {
		t.Fatal(err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := strict.Unmarshal(js, &hcm); err != nil {
		t.Fatalf("README HttpConnectionManager settings: %v", err)
	}
	if hcm.GetNormalizePath().GetValue() != want.GetNormalizePath().GetValue() || hcm.GetMergeSlashes() != want.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != want.GetPathWithEscapedSlashesAction() ||
		hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() != want.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() {
		t.Errorf("README HttpConnectionManager settings %v differ from envoy.yaml's", &hcm)
	}

	js, err = yaml.YAMLToJSONStrict([]byte(snippet(t, "README.md", string(readme), "# Envoy: route_config.virtual_hosts[].routes")))
	if err != nil {
		t.Fatal(err)
	}
	var rc routev3.RouteConfiguration
	if err := strict.Unmarshal([]byte(`{"virtual_hosts": [{"name": "x", "domains": ["*"], "routes": `+string(js)+`}]}`), &rc); err != nil {
		t.Fatalf("README route: %v", err)
	}
	if err := validateTree(&rc, "README route"); err != nil {
		t.Fatal(err)
	}
	var billing *routev3.Route
	for _, r := range want.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		if r.GetMatch().GetPathSeparatedPrefix() == "/billing" {
			billing = r
		}
	}
	if diff := cmp.Diff(billing, rc.GetVirtualHosts()[0].GetRoutes()[0], protocmp.Transform()); diff != "" {
		t.Errorf("README route differs from envoy.yaml's /billing route (-envoy.yaml +README):\n%s", diff)
	}
}

// envoyHTTPConnectionManager returns the HttpConnectionManager of the
// bootstrap's one listener.
func envoyHTTPConnectionManager(t *testing.T, b *bootstrapv3.Bootstrap) *hcmv3.HttpConnectionManager {
	t.Helper()
	var hcm hcmv3.HttpConnectionManager
	filters := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()
	if len(filters) != 1 || filters[0].GetName() != "envoy.filters.network.http_connection_manager" {
		t.Fatalf("listener filters = %v, want one http_connection_manager", filters)
	}
	if err := filters[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	return &hcm
}

// envoyContextExtensions returns, by route (its prefix, path_separated_prefix
// or path), the context_extensions of the routes that set an
// ExtAuthzPerRoute, failing the test for one that disables ext_authz or
// is keyed by another name than the ext_authz filter's.
func envoyContextExtensions(t *testing.T, hcm *hcmv3.HttpConnectionManager) map[string]map[string]string {
	t.Helper()
	const filter = "envoy.filters.http.ext_authz"
	out := map[string]map[string]string{}
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			m := r.GetMatch()
			where := m.GetPathSeparatedPrefix() + m.GetPrefix() + m.GetPath()
			for name, cfg := range r.GetTypedPerFilterConfig() {
				if name != filter {
					t.Errorf("route %s: typed_per_filter_config %q is not the ext_authz filter %q", where, name, filter)
					continue
				}
				var per extauthzv3.ExtAuthzPerRoute
				if err := cfg.UnmarshalTo(&per); err != nil {
					t.Errorf("route %s: %v", where, err)
					continue
				}
				if per.GetDisabled() {
					t.Errorf("route %s disables ext_authz; give it a jwtauthz route with auth: none instead", where)
				}
				out[where] = per.GetCheckSettings().GetContextExtensions()
			}
		}
	}
	return out
}

func socketAddr(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		return ""
	}
	return fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
}

func clusterEndpoints(c *clusterv3.Cluster) string {
	var addrs []string
	for _, e := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			addrs = append(addrs, socketAddr(lb.GetEndpoint().GetAddress()))
		}
	}
	return strings.Join(addrs, ",")
}
