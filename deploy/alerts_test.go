//go:build deploy

package deploy_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

// alertTests is the promtool unit-test file of the chart's alerts.
const alertTests = "testdata/alerts.test.yaml"

// TestAlertRules renders the chart's PrometheusRule, writes its groups to
// a Prometheus rules file, and runs the promtool pinned in tools/go.mod
// on it: `promtool check rules` for the bolt and etcd renderings, and
// `promtool test rules` with testdata/alerts.test.yaml, which feeds each
// alert synthetic series and says when it must fire, with which labels
// and annotations, and when it must not.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"bolt", []string{"prometheusRule.enabled=true", "serviceMonitor.enabled=true"}},
		{"etcd", []string{"prometheusRule.enabled=true", "serviceMonitor.enabled=true", "store.backend=etcd", "store.etcd.endpoints={https://etcd-0.etcd:2379}", "replicaCount=3"}},
	} {
		out, err := render(t, nil, tt.args...)
		if err != nil {
			t.Fatal(err)
		}
		rules := ruleFile(t, out)
		path := filepath.Join(dir, "jwtauthz-rules-"+tt.name+".yaml")
		if err := os.WriteFile(path, rules, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := promtool(t, "check", "rules", "--lint=all", "--lint-fatal", path); err != nil {
			t.Errorf("promtool check rules (%s): %v\n%s", tt.name, err, out)
		}
	}

	// The unit tests name the bolt rendering's file.
	if err := os.Rename(filepath.Join(dir, "jwtauthz-rules-bolt.yaml"), filepath.Join(dir, "jwtauthz-rules.yaml")); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(alertTests)), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := promtool(t, "test", "rules", filepath.Join(dir, filepath.Base(alertTests)))
	if err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", alertTests, err, out)
	}
	t.Logf("promtool test rules %s:\n%s", alertTests, out)
}

// TestAlertTestsCoverEveryAlert checks that testdata/alerts.test.yaml
// shows every alert of the chart both firing and not firing.
func TestAlertTestsCoverEveryAlert(t *testing.T) {
	t.Parallel()
	out, err := render(t, nil, "prometheusRule.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range decodeManifests(t, out).promRules[0].Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
		}
	}
	data, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Tests []struct {
			Name  string `json:"name"`
			Cases []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, g := range file.Tests {
		for _, c := range g.Cases {
			if !slices.Contains(alerts, c.Alertname) {
				t.Errorf("test %q checks alert %s, which the chart does not define", g.Name, c.Alertname)
			}
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
			} else {
				quiet[c.Alertname] = true
			}
		}
	}
	sort.Strings(alerts)
	for _, a := range alerts {
		if !fires[a] {
			t.Errorf("%s: no test shows it firing", a)
		}
		if !quiet[a] {
			t.Errorf("%s: no test shows it quiet on healthy series", a)
		}
	}
}

// ruleFile returns the spec (its groups) of the one PrometheusRule in a
// rendering: a Prometheus rules file, as the operator hands it over.
func ruleFile(t *testing.T, out []byte) []byte {
	t.Helper()
	m, _, err := parseManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.promRules) != 1 {
		t.Fatalf("the rendering has %d PrometheusRules, want 1", len(m.promRules))
	}
	data, err := yaml.Marshal(m.promRules[0].Spec)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// promtoolBuild builds the promtool pinned in tools/go.mod (`go tool`
// caches the binary), which takes minutes without a build cache. TestMain
// starts it first thing when the alert tests are to run, so that it
// overlaps the other tests instead of adding to them.
var promtoolBuild = sync.OnceValue(func() error {
	out, err := runPromtool("--version")
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
})

// startPromtoolBuild starts building promtool in the background when the
// tests selected by -test.run include TestAlertRules, and returns a
// function that waits for the build to end.
func startPromtoolBuild() (wait func()) {
	run := ""
	if f := flag.Lookup("test.run"); f != nil {
		run = f.Value.String()
	}
	top, _, _ := strings.Cut(run, "/")
	if ok, _ := regexp.MatchString(top, "TestAlertRules"); !ok {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		promtoolBuild()
	}()
	return func() { <-done }
}

// promtool runs the pinned promtool in the repository root (go tool needs
// the module) and returns its output; give it absolute paths.
func promtool(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	if err := promtoolBuild(); err != nil {
		t.Fatalf("go tool promtool (pinned in tools/go.mod): %v", err)
	}
	return runPromtool(args...)
}

func runPromtool(args ...string) ([]byte, error) {
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("go", append([]string{"tool", "-modfile=" + filepath.Join(root, "tools", "go.mod"), "promtool"}, args...)...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("promtool %s: %v", strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}
