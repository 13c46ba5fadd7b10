//go:build deploy

package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"text/template"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"

	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/testlog"
)

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

	for _, name := range []string{
		"jwtauthz_checks_total", "jwtauthz_check_duration_seconds_bucket", "jwtauthz_users_created_total",
		"jwtauthz_jwks_refresh_total", "jwtauthz_jwks_last_success_timestamp_seconds", "jwtauthz_jwks_refresh_interval_seconds",
		"jwtauthz_token_cache_requests_total", "jwtauthz_serving", "jwtauthz_build_info",
		"jwtauthz_config_reloads_total", "jwtauthz_config_last_reload_success_timestamp_seconds", "jwtauthz_config_last_reload_failure_timestamp_seconds",
	} {
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

// scrapeRunningJWTAuthz starts `jwtauthz serve` with a PEM provider and a
// JWKS URL provider, sends an allowed and a denied Check, and returns the
// series names on /metrics.
func scrapeRunningJWTAuthz(t *testing.T) map[string]bool {
	t.Helper()
	// local signs the tokens; remote is the IdP's key, served as a JWK Set.
	local, remote := servetest.New(t), servetest.New(t)
	jwks := remote.JWKS(t)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	defer idp.Close()

	local.WriteConfig(t, fmt.Sprintf(`listen: 127.0.0.1:0
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
`, local.DBPath, local.PublicPEM, idp.URL))

	logs := &testlog.Buffer{}
	serve := exec.Command(buildJWTAuthz(t), "serve", "--config", local.ConfigPath, "--log-format", "json", "--drain", "0s")
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

	token := local.Mint(t, "alice", time.Hour)
	if out, err := jwtauthzCmd(t, "check", "--addr", grpcAddr, "--token", token); err != nil {
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
func servingAddrs(t *testing.T, logs *testlog.Buffer, exited <-chan error) (grpcAddr, httpAddr string) {
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

func waitReady(t *testing.T, url string, logs *testlog.Buffer) {
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

func checkServiceMonitor(t *testing.T, m *manifests) {
	t.Helper()
	sm := m.serviceMonitors[0]
	if !labelsMatch(sm.Spec.Selector.MatchLabels, m.service(t, release).Labels) {
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
