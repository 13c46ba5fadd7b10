package deploy_test

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/yaml"
)

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
