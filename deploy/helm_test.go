//go:build deploy

package deploy_test

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "charts/jwtauthz" // relative to repoRoot
	release     = "jwtauthz"
	namespace   = "jwtauthz"
	kubeVersion = "1.33.0" // helm built with `go tool` defaults to 1.20, below the chart's kubeVersion
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
	flag.Parse()
	waitPromtool := startPromtoolBuild()
	code := m.Run()
	waitPromtool()
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
var valueSets = []string{"jwks-url-values.yaml", "pem-secret-values.yaml", "monitoring-values.yaml", "observability-values.yaml", "etcd-values.yaml", "etcd-hpa-values.yaml", "routes-values.yaml"}

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

// copyChart copies the chart into a temporary directory and returns the
// copy's path; edit sees each file's path relative to the chart and its
// content, and returns the path and content to write.
func copyChart(t *testing.T, edit func(rel string, data []byte) (string, []byte)) string {
	t.Helper()
	src := filepath.Join(repoRoot, chartDir)
	dst := filepath.Join(t.TempDir(), "jwtauthz")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, data = edit(rel, data)
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}
