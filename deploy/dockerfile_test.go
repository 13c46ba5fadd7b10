//go:build deploy

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
	toolchain := regexp.MustCompile(`(?m)^toolchain go(\d+\.\d+\.\d+)$`).FindStringSubmatch(string(goMod))
	if toolchain == nil {
		t.Fatal("go.mod names no toolchain go1.N.P: the Dockerfile's builder is pinned to it")
	}
	for _, want := range []string{
		"FROM golang:" + toolchain[1] + " AS build",
		"CGO_ENABLED=0",
		"ARG VERSION",
		`go build -trimpath -ldflags="-s -w -X github.com/jwtauthz/jwtauthz/internal/version.version=${VERSION} -X github.com/jwtauthz/jwtauthz/internal/version.revision=${REVISION}" -o /out/jwtauthz ./cmd/jwtauthz`,
		"org.opencontainers.image.version=${VERSION}",
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
	// The version is a build argument, declared in both stages that use
	// it (an ARG ends with its stage), never written into the file.
	if n := strings.Count(df, "\nARG VERSION"); n != 2 {
		t.Errorf("Dockerfile declares ARG VERSION %d times, want 2: in the build stage (-ldflags) and the final one (the label)", n)
	}
	if regexp.MustCompile(`(?m)^[^#].*\b` + regexp.QuoteMeta(chartAppVersion(t)) + `\b`).MatchString(df) {
		t.Errorf("Dockerfile hard-codes the version %s outside its comments; it is the VERSION build argument", chartAppVersion(t))
	}

	// The binary built as the Dockerfile builds it reports the version.
	out, err := jwtauthzCmd(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(out, "\n"); first != "jwtauthz "+testVersion {
		t.Errorf("jwtauthz version printed %q, want %q: the Dockerfile's -X does not reach internal/version", first, "jwtauthz "+testVersion)
	}
	if !strings.Contains(out, "revision: "+testRevision+"\n") {
		t.Errorf("jwtauthz version printed %q, want revision %s: the Dockerfile's REVISION does not reach internal/version", out, testRevision)
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

// testVersion and testRevision are the VERSION and REVISION build
// arguments of the tests' binary.
const (
	testVersion  = "0.0.0-deploytest"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
)

// dockerLDFlags is the -ldflags of the Dockerfile's go build, with
// ${VERSION} and ${REVISION} replaced by testVersion and testRevision.
func dockerLDFlags() (string, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`go build -trimpath -ldflags="([^"]*)" -o /out/jwtauthz ./cmd/jwtauthz`).FindSubmatch(data)
	if m == nil {
		return "", fmt.Errorf("the Dockerfile has no go build -trimpath -ldflags=\"...\" of ./cmd/jwtauthz")
	}
	return strings.NewReplacer("${VERSION}", testVersion, "${REVISION}", testRevision).Replace(string(m[1])), nil
}

// buildJWTAuthz builds cmd/jwtauthz exactly as the Dockerfile does, with
// VERSION testVersion.
func buildJWTAuthz(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp(helmHome, "bin-")
		if err != nil {
			binErr = err
			return
		}
		ldflags, err := dockerLDFlags()
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "jwtauthz")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags="+ldflags, "-o", binPath, "./cmd/jwtauthz")
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
