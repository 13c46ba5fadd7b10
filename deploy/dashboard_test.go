//go:build deploy

package deploy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// fullDashboard is what TestDashboard reads of a Grafana dashboard, beyond
// the dashboard type of monitoring_test.go.
type fullDashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name    string `json:"name"`
			Current struct {
				Value any `json:"value"`
			} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		GridPos struct {
			X, Y, W, H int
		} `json:"gridPos"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// renderDashboard renders the dashboard ConfigMap of a release in a
// namespace and returns its dashboard.
func renderDashboard(t *testing.T, releaseName, ns string) fullDashboard {
	t.Helper()
	out, err := helm(t, "template", releaseName, chartDir, "--namespace", ns, "--kube-version", kubeVersion, "--set", "dashboard.enabled=true")
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := parseManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range m.configMaps {
		if strings.HasSuffix(cm.Name, "-dashboard") {
			var d fullDashboard
			if err := json.Unmarshal([]byte(cm.Data["jwtauthz.json"]), &d); err != nil {
				t.Fatalf("dashboard JSON: %v", err)
			}
			return d
		}
	}
	t.Fatal("no dashboard ConfigMap")
	return fullDashboard{}
}

// TestDashboard checks the Grafana dashboard: a uid of its own per release
// (two releases' dashboards would otherwise replace each other in
// Grafana), stable across upgrades; the release's namespace and job
// preselected; a layout without overlaps; and the panels operators need
// for routes, dry runs, JWKS freshness, reloads and builds.
func TestDashboard(t *testing.T) {
	t.Parallel()
	a := renderDashboard(t, "jwtauthz", "jwtauthz")
	again := renderDashboard(t, "jwtauthz", "jwtauthz")
	other := renderDashboard(t, "jwtauthz", "staging")
	third := renderDashboard(t, "edge", "jwtauthz")

	uidRE := regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`) // Grafana's limit
	seen := map[string]bool{}
	for _, d := range []fullDashboard{a, other, third} {
		if !uidRE.MatchString(d.UID) {
			t.Errorf("uid %q: want at most 40 letters, digits, - and _", d.UID)
		}
		if seen[d.UID] || seen[d.Title] {
			t.Errorf("uid %q or title %q is another release's too", d.UID, d.Title)
		}
		seen[d.UID], seen[d.Title] = true, true
	}
	if a.UID != again.UID {
		t.Errorf("uid changed between two renderings of one release: %s, %s", a.UID, again.UID)
	}
	if !strings.Contains(other.Title, "staging/jwtauthz") || !strings.Contains(third.Title, "jwtauthz/edge-jwtauthz") {
		t.Errorf("titles %q, %q do not name their release", other.Title, third.Title)
	}
	current := map[string]string{}
	for _, v := range other.Templating.List {
		if vs, ok := v.Current.Value.([]any); ok && len(vs) == 1 {
			current[v.Name], _ = vs[0].(string)
		}
	}
	if current["namespace"] != "staging" || current["job"] != "jwtauthz" || current["route"] != "$__all" {
		t.Errorf("variables open on %v, want namespace staging, job jwtauthz, every route", current)
	}

	// The file in the chart stays importable by hand, with a fixed uid.
	data, err := os.ReadFile(filepath.Join(repoRoot, chartDir, "dashboards", "jwtauthz.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file fullDashboard
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	if file.UID != "jwtauthz" || len(file.Panels) != len(a.Panels) {
		t.Errorf("dashboards/jwtauthz.json: uid %q, %d panels; want jwtauthz and the rendering's %d", file.UID, len(file.Panels), len(a.Panels))
	}

	// Layout: unique ids, inside the 24 columns, no two panels overlapping.
	ids := map[int]bool{}
	for i, p := range a.Panels {
		g := p.GridPos
		if ids[p.ID] {
			t.Errorf("panel %q: id %d is used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is outside the 24 columns", p.Title, g)
		}
		for _, q := range a.Panels[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %q %+v and %q %+v overlap", q.Title, h, p.Title, g)
			}
		}
	}

	// What the dashboard must show, by the queries that show it.
	for _, want := range []struct{ what, re string }{
		{"checks by route and decision", `sum by \(route, decision\) \(rate\(jwtauthz_checks_total\{[^}]*route=~"\$route"`},
		{"dry-run denials by route", `sum by \(route, reason\) \(rate\(jwtauthz_checks_total\{[^}]*decision="dry_run_deny"`},
		{"reloads by result", `sum by \(result\) \(increase\(jwtauthz_config_reloads_total`},
		{"time since the last config load", `time\(\) - jwtauthz_config_last_reload_success_timestamp_seconds`},
		{"a failed reload not followed by a success", `jwtauthz_config_last_reload_failure_timestamp_seconds\{[^}]*\} > jwtauthz_config_last_reload_success_timestamp_seconds`},
		{"JWKS age against the refresh interval", `\(time\(\) - jwtauthz_jwks_last_success_timestamp_seconds\{[^}]*\}\) / jwtauthz_jwks_refresh_interval_seconds`},
		{"build info", `count by \(version, revision, goversion\) \(jwtauthz_build_info`},
	} {
		re := regexp.MustCompile(want.re)
		found := false
		for _, p := range a.Panels {
			for _, tg := range p.Targets {
				found = found || re.MatchString(tg.Expr)
			}
		}
		if !found {
			t.Errorf("no panel shows %s (a query matching %s)", want.what, want.re)
		}
	}
}
