package main

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jwtauthz/jwtauthz/config"
	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/signing"
	"github.com/jwtauthz/jwtauthz/store/bolt"
)

// kubeVolume is a directory laid out as the kubelet lays out a ConfigMap or
// Secret volume: the files are symlinks through ..data to a timestamped
// directory, and an update writes a new directory and renames a new
// ..data_tmp link over ..data, in one atomic step.
type kubeVolume struct {
	dir string
	gen int
}

func newKubeVolume(t *testing.T, files map[string][]byte) *kubeVolume {
	t.Helper()
	v := &kubeVolume{dir: t.TempDir()}
	v.update(t, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// update swaps in files as the kubelet does.
func (v *kubeVolume) update(t *testing.T, files map[string][]byte) {
	t.Helper()
	v.gen++
	ts := fmt.Sprintf("..2026_12_02_10_00_%02d.%d", v.gen, v.gen)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

func (v *kubeVolume) path(name string) string { return filepath.Join(v.dir, name) }

// reloadSetup is a service whose config and key live in two kubelet-style
// volumes, a ConfigMap and a Secret, watched for changes.
type reloadSetup struct {
	cfgVol, keyVol *kubeVolume
	dbPath         string
	key            crypto.Signer
	svc            *service
	cc             *checkClient
}

// reloadConfig is a config whose listeners are addrs (fixed once the
// service started, as a reload must keep them) and whose routes are extra.
func (r *reloadSetup) config(listen, httpListen, extra string) []byte {
	return fmt.Appendf(nil, "listen: %s\nhttp_listen: %s\nstore: {path: %s}\nproviders:\n  - algorithms: [ES256]\n    pem_files: [%s]\n%s",
		listen, httpListen, r.dbPath, r.keyVol.path("public.pem"), extra)
}

func publicPEM(t *testing.T, key crypto.Signer) []byte {
	return keyFile(t, key, signing.PublicKeyFile)
}

// jwksOf is the JWK Set keygen would write for key.
func jwksOf(t *testing.T, key crypto.Signer) []byte {
	return keyFile(t, key, signing.JWKSFile)
}

// keyFile returns the file called name that keygen writes for key (ES256).
func keyFile(t *testing.T, key crypto.Signer, name string) []byte {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "k")
	if _, err := signing.WriteKeyFiles(dir, "ES256", key); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newKey(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := signing.Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func startReload(t *testing.T, watch bool) *reloadSetup {
	t.Helper()
	r := &reloadSetup{dbPath: filepath.Join(t.TempDir(), "users.db"), key: newKey(t)}
	r.keyVol = newKubeVolume(t, map[string][]byte{"public.pem": publicPEM(t, r.key)})
	r.cfgVol = newKubeVolume(t, map[string][]byte{"config.yaml": r.config("127.0.0.1:0", "127.0.0.1:0", "")})
	cfg, err := loadConfigFlag(&cliEnv{getenv: func(string) string { return "" }}, r.cfgVol.path("config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := startService(context.Background(), cfg, serviceOptions{
		logger:     discardLogger(),
		configPath: r.cfgVol.path("config.yaml"),
		watch:      watch,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.shutdown(0) })
	r.svc = svc
	r.cc = dialCheck(t, svc.grpcAddr.String())
	return r
}

// writeConfig swaps in a new config file with the listeners unchanged.
func (r *reloadSetup) writeConfig(t *testing.T, extra string) {
	t.Helper()
	r.cfgVol.update(t, map[string][]byte{"config.yaml": r.config("127.0.0.1:0", "127.0.0.1:0", extra)})
}

func (r *reloadSetup) mint(t *testing.T, key crypto.Signer, user string) string {
	t.Helper()
	tok, err := signing.Mint(key, user, signing.Options{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// eventually polls cond every 20 ms for up to limit and returns how long
// it took, failing the test when it never held.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, limit)
	return 0
}

func (r *reloadSetup) allowed(t *testing.T, tok, path string) (answer, bool) {
	t.Helper()
	a, err := r.cc.checkAt(context.Background(), tok, path)
	if err != nil {
		t.Fatal(err)
	}
	return a, a.allow
}

func reloadsCounted(r *reloadSetup, result string) float64 {
	return testutil.ToFloat64(r.svc.reloads.total.WithLabelValues(result))
}

func TestReloadKeyRotationThroughSecretVolume(t *testing.T) {
	r := startReload(t, true)
	oldTok := r.mint(t, r.key, "alice")
	first, ok := r.allowed(t, oldTok, "/api")
	if !ok {
		t.Fatalf("before the rotation: %+v, want allowed", first)
	}
	next := newKey(t)
	newTok := r.mint(t, next, "alice")
	if a, ok := r.allowed(t, newTok, "/api"); ok {
		t.Fatalf("the new key's token before its key is published: %+v, want refused", a)
	}

	r.keyVol.update(t, map[string][]byte{"public.pem": publicPEM(t, next)})
	took := eventually(t, 3*time.Second, "the new key's token allowed", func() bool {
		_, ok := r.allowed(t, newTok, "/api")
		return ok
	})
	t.Logf("new key accepted %v after the Secret volume swap", took.Round(time.Millisecond))
	if a, ok := r.allowed(t, oldTok, "/api"); ok || a.reason != "invalid_signature" {
		t.Errorf("the old key's token after the rotation: %+v, want refused invalid_signature (the token cache must not answer from a removed key)", a)
	}
	if a, _ := r.allowed(t, newTok, "/api"); a.userID != first.userID {
		t.Errorf("alice's id after the reload = %q, want %q", a.userID, first.userID)
	}
	if got := reloadsCounted(r, "success"); got < 1 {
		t.Errorf("jwtauthz_config_reloads_total{result=success} = %v, want at least 1", got)
	}
}

func TestReloadRouteAddedAndBrokenConfigKept(t *testing.T) {
	r := startReload(t, true)
	if a, ok := r.allowed(t, "", "/healthz"); ok || a.reason != "missing_token" {
		t.Fatalf("/healthz before the route: %+v, want missing_token", a)
	}
	r.writeConfig(t, "routes:\n  - name: health\n    match: {paths: [/healthz]}\n    auth: none\n")
	took := eventually(t, 3*time.Second, "the new route applies", func() bool {
		_, ok := r.allowed(t, "", "/healthz")
		return ok
	})
	t.Logf("route applied %v after the ConfigMap swap", took.Round(time.Millisecond))

	// A broken config: the running one stays, and the failure is counted.
	failuresBefore := reloadsCounted(r, "failure")
	r.cfgVol.update(t, map[string][]byte{"config.yaml": []byte("listen: 127.0.0.1:0\nproviders:\n  - algorithms: [ES256]\n    pem_fils: [x]\n")})
	eventually(t, 3*time.Second, "the broken config counted as a failed reload", func() bool {
		return reloadsCounted(r, "failure") > failuresBefore
	})
	if _, ok := r.allowed(t, "", "/healthz"); !ok {
		t.Error("/healthz after a broken config: refused, want the running config (with its route) kept")
	}
	if !r.svc.serving() {
		t.Error("health after a broken config: NOT_SERVING, want unchanged")
	}

	// Fixed again: a success.
	successesBefore := reloadsCounted(r, "success")
	r.writeConfig(t, "")
	eventually(t, 3*time.Second, "the fixed config reloaded", func() bool {
		return reloadsCounted(r, "success") > successesBefore
	})
	if a, ok := r.allowed(t, "", "/healthz"); ok || a.reason != "missing_token" {
		t.Errorf("/healthz once the route is gone: %+v, want missing_token", a)
	}
}

func TestReloadRefusesFixedKeys(t *testing.T) {
	r := startReload(t, false)
	tests := []struct {
		name, doc, want string
	}{
		{"listen", string(r.config("127.0.0.1:1", "127.0.0.1:0", "")), "listen cannot change while jwtauthz runs: restart"},
		{"http_listen", string(r.config("127.0.0.1:0", "127.0.0.1:1", "")), "http_listen cannot change"},
		{"store", strings.Replace(string(r.config("127.0.0.1:0", "127.0.0.1:0", "")), r.dbPath, r.dbPath+".other", 1), "store cannot change"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.cfgVol.update(t, map[string][]byte{"config.yaml": []byte(tt.doc)})
			err := r.svc.reload("test")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("reload = %v, want %q", err, tt.want)
			}
		})
	}
	if got := reloadsCounted(r, "failure"); got != 3 {
		t.Errorf("failed reloads counted = %v, want 3", got)
	}
}

// TestReloadUnderLoad reloads 100 times while clients send Checks without
// pause: no Check fails, every user keeps its id, and no goroutine is left
// behind. Under -race it is also the race test of reloads against Checks.
func TestReloadUnderLoad(t *testing.T) {
	r := startReload(t, false)
	toks := make([]string, 8)
	ids := make([]string, len(toks))
	for i := range toks {
		toks[i] = r.mint(t, r.key, fmt.Sprintf("user-%d", i))
		a, ok := r.allowed(t, toks[i], "/api")
		if !ok {
			t.Fatalf("user-%d: %+v", i, a)
		}
		ids[i] = a.userID
	}
	r.writeConfig(t, "routes:\n  - name: open\n    match: {path_prefixes: [/open]}\n    auth: none\n")
	if err := r.svc.reload("warm-up"); err != nil {
		t.Fatal(err)
	}
	before := settledGoroutines(0)

	ctx, cancel := context.WithCancel(context.Background())
	var checks, failures atomic.Int64
	var failure atomic.Value
	var wg sync.WaitGroup
	for i := range toks {
		wg.Go(func() {
			for ctx.Err() == nil {
				a, err := r.cc.check(context.Background(), toks[i])
				checks.Add(1)
				if err != nil || !a.allow || a.userID != ids[i] {
					failures.Add(1)
					failure.Store(fmt.Sprintf("user-%d: %+v %v (want id %s)", i, a, err, ids[i]))
				}
			}
		})
	}
	for i := range 100 {
		extra := fmt.Sprintf("routes:\n  - name: open-%d\n    match: {path_prefixes: [/open]}\n    auth: none\n", i%3)
		r.cfgVol.update(t, map[string][]byte{"config.yaml": r.config("127.0.0.1:0", "127.0.0.1:0", extra)})
		if err := r.svc.reload("test"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	cancel()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d Checks failed during 100 reloads; one: %v", n, checks.Load(), failure.Load())
	}
	after := settledGoroutines(before)
	t.Logf("%d Checks during 100 reloads, none failed; goroutines %d before, %d after", checks.Load(), before, after)
	if after > before {
		t.Errorf("goroutines grew from %d to %d over 100 reloads", before, after)
	}
	if got := reloadsCounted(r, "success"); got != 101 {
		t.Errorf("successful reloads counted = %v, want 101", got)
	}
}

// TestReloadKeepsRemoteKeys reloads 100 times a config of two JWKS-URL
// providers: one unchanged, whose fetched keys and refresh loop are kept
// (one fetch in all), one whose refresh interval changes each time, whose
// loop is replaced; no loop is left running.
func TestReloadKeepsRemoteKeys(t *testing.T) {
	key := newKey(t)
	jwks := jwksOf(t, key)
	var fetches sync.Map // path -> *atomic.Int64
	var down atomic.Bool // the identity provider answers 503 to everything
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := fetches.LoadOrStore(r.URL.Path, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		if r.URL.Path == "/down" || down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	count := func(path string) int64 {
		n, ok := fetches.Load(path)
		if !ok {
			return 0
		}
		return n.(*atomic.Int64).Load()
	}
	dbPath := filepath.Join(t.TempDir(), "users.db")
	// The other provider has a PEM key beside its JWKS URL.
	pemPath := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(pemPath, publicPEM(t, newKey(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := func(interval string) []byte {
		return fmt.Appendf(nil, "listen: 127.0.0.1:0\nhttp_listen: \"\"\nstore: {path: %s}\nproviders:\n"+
			"  - {name: idp, algorithms: [ES256], jwks_url: %s/idp}\n"+
			"  - {name: other, issuer: https://other.example, algorithms: [ES256], jwks_url: %s/other, jwks_refresh_interval: %s, pem_files: [%s]}\n",
			dbPath, srv.URL, srv.URL, interval, pemPath)
	}
	vol := newKubeVolume(t, map[string][]byte{"config.yaml": doc("1h")})
	cfg, err := config.Load(vol.path("config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := startService(context.Background(), cfg, serviceOptions{logger: discardLogger(), configPath: vol.path("config.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.shutdown(0) })
	waitHealth(t, svc.grpcAddr.String(), healthpb.HealthCheckResponse_SERVING)
	cc := dialCheck(t, svc.grpcAddr.String())
	tok, err := signing.Mint(key, "alice", signing.Options{TTL: time.Hour, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	otherTok, err := signing.Mint(key, "bob", signing.Options{TTL: time.Hour, Now: time.Now(), Issuer: "https://other.example"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the other provider's keys load", func() bool {
		a, err := cc.check(context.Background(), otherTok)
		return err == nil && a.allow
	})
	before := settledGoroutines(0)
	intervals := []string{"2h", "1h"}
	for i := range 100 {
		vol.update(t, map[string][]byte{"config.yaml": doc(intervals[i%2])})
		if err := svc.reload("test"); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		// The changed provider has its keys the moment the reload is in
		// force: its new source starts from the keys the old one fetched.
		for _, tk := range []string{tok, otherTok} {
			if a, err := cc.check(context.Background(), tk); err != nil || !a.allow {
				t.Fatalf("after reload %d: %+v %v", i, a, err)
			}
		}
	}
	after := settledGoroutines(before)
	t.Logf("fetches: idp %d, other %d; goroutines %d before, %d after", count("/idp"), count("/other"), before, after)
	if got := count("/idp"); got != 1 {
		t.Errorf("the unchanged provider's set was fetched %d times over 100 reloads, want 1", got)
	}
	if got := count("/other"); got != 1 {
		t.Errorf("the set of the provider whose interval changed was fetched %d times over 100 reloads, want 1 (at start): each new source starts from the running one's keys", got)
	}
	if after > before {
		t.Errorf("goroutines grew from %d to %d over 100 reloads", before, after)
	}

	// With the identity provider down, a reload that changes the other
	// provider's interval and rotates its PEM key needs no fetch: it
	// applies, the fetched keys stay and the new PEM key verifies.
	down.Store(true)
	rotated := newKey(t)
	if err := os.WriteFile(pemPath, publicPEM(t, rotated), 0o644); err != nil {
		t.Fatal(err)
	}
	vol.update(t, map[string][]byte{"config.yaml": doc("3h")})
	if err := svc.reload("test"); err != nil {
		t.Fatalf("reload of a changed interval and PEM key with the identity provider down: %v", err)
	}
	rotatedTok, err := signing.Mint(rotated, "carol", signing.Options{TTL: time.Hour, Now: time.Now(), Issuer: "https://other.example", NoKID: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range []string{tok, otherTok, rotatedTok} {
		if a, err := cc.check(context.Background(), tk); err != nil || !a.allow {
			t.Errorf("after the reload with the identity provider down: %+v %v", a, err)
		}
	}
	down.Store(false)

	// A changed provider whose new JWK Set cannot be fetched fails the
	// reload, as validate would; the running config, keys and all, stays.
	vol.update(t, map[string][]byte{"config.yaml": bytes.Replace(doc("1h"), []byte(srv.URL+"/other"), []byte(srv.URL+"/down"), 1)})
	err = svc.reload("test")
	if err == nil || !strings.Contains(err.Error(), `provider "other"`) || !strings.Contains(err.Error(), "503") {
		t.Errorf("reload with the other provider's JWKS down: %v, want an error naming the provider and the 503", err)
	}
	if count("/down") != 1 {
		t.Errorf("/down fetched %d times, want 1", count("/down"))
	}
	for _, tk := range []string{tok, otherTok} {
		if a, err := cc.check(context.Background(), tk); err != nil || !a.allow {
			t.Errorf("after the failed reload: %+v %v, want the running config to allow", a, err)
		}
	}
}

// TestReloadOnSIGHUP runs serve as a process with --watch=false: a changed
// config file is not read until SIGHUP, then it is, and the log says so.
func TestReloadOnSIGHUP(t *testing.T) {
	e := servetest.New(t)
	c := startChild(t, e.ConfigPath, nil, "--drain", "0", "--watch=false")
	cc := dialCheck(t, c.grpcAddr)
	waitHealth(t, c.grpcAddr, healthpb.HealthCheckResponse_SERVING)
	open := func() bool {
		a, err := cc.checkAt(context.Background(), "", "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		return a.allow
	}
	doc, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	e.WriteConfig(t, string(doc)+"routes:\n  - name: health\n    match: {paths: [/healthz]}\n    auth: none\n")
	time.Sleep(2 * reloadDebounce) // what a watcher would have needed
	if open() {
		t.Fatal("/healthz open before SIGHUP with --watch=false")
	}
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "the route applies after SIGHUP", open)
	if !strings.Contains(c.logs.String(), `"msg":"config reloaded","trigger":"SIGHUP"`) {
		t.Errorf("logs lack the reload:\n%s", c.logs.String())
	}
}

func TestValidate(t *testing.T) {
	e := servetest.New(t)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/jwks" {
			http.NotFound(w, r)
			return
		}
		w.Write(e.JWKS(t))
	}))
	t.Cleanup(jwks.Close)
	good := fmt.Sprintf(`listen: 127.0.0.1:1
store: {path: %s}
providers:
  - name: corp
    algorithms: [ES256]
    pem_files: [%s]
  - name: partner
    issuer: https://partner.example
    algorithms: [ES256]
    jwks_url: %s/jwks?api_key=s3cret
routes:
  - name: health
    match: {paths: [/healthz]}
    auth: none
  - name: orders
    match: {methods: [POST], path_prefixes: [/api/orders]}
    require: {scopes: ["orders:write"], providers: [corp]}
`, filepath.Join(e.Dir, "never-created.db"), e.PublicPEM, jwks.URL)
	e.WriteConfig(t, good)
	out, stderr, code := runForTest(t, "validate", "--config", e.ConfigPath)
	if code != 0 {
		t.Fatalf("good config: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"valid: " + e.ConfigPath,
		"corp: issuer (any; tokens of no other issuer); algorithms ES256; 1 key from pem_files",
		"partner: issuer https://partner.example; algorithms ES256; 1 key from jwks_url",
		"health: paths /healthz; auth none",
		"orders: methods POST, path_prefixes /api/orders; auth required, scopes orders:write, providers corp",
		"default: everything else; auth required",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out+stderr, "s3cret") {
		t.Errorf("validate printed the URL's secret:\n%s\n%s", out, stderr)
	}
	if _, err := os.Stat(filepath.Join(e.Dir, "never-created.db")); !os.IsNotExist(err) {
		t.Errorf("validate opened the store: %v", err)
	}

	tests := []struct {
		name string
		doc  string
		code int
		want []string // in stderr
	}{
		{"unknown key", strings.Replace(good, "    auth: none\n", "    auth: none\n    auth_mode: x\n", 1), 1, []string{"line 15", `unknown key "routes[0].auth_mode"`}},
		{"missing key file", strings.Replace(good, e.PublicPEM, filepath.Join(e.Dir, "missing.pem"), 1), 1, []string{"line 6: providers[0].pem_files[0]", "missing.pem", "no such file"}},
		{"JWKS URL that fails", strings.Replace(good, jwks.URL+"/jwks", jwks.URL+"/gone", 1), 1, []string{`line 10: providers[1].jwks_url: provider "partner"`, "HTTP status 404"}},
		{"wrong type", strings.Replace(good, "store:", "cache: {max_entries: 2.5}\nstore:", 1), 1, []string{`line 2: cache.max_entries: must be an integer (int), got "2.5"`}},
		{"bad value", strings.Replace(good, "[POST]", "[post]", 1), 1, []string{"line 16", `routes[1].match.methods[0]: "post" is not an uppercase HTTP method`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.WriteConfig(t, tt.doc)
			out, stderr, code := runForTest(t, "validate", "--config", e.ConfigPath)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.code, out, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
	if _, _, code := runForTest(t, "validate", "--config", filepath.Join(e.Dir, "nope.yaml")); code != 1 {
		t.Errorf("missing config file: exit %d, want 1", code)
	}
	if _, _, code := runForTest(t, "validate"); code != 2 {
		t.Errorf("no --config: exit %d, want 2", code)
	}
}

// TestReloadJWKSMetricsFollowTheConfig: the JWKS series describe the
// config in force. A failed reload leaves none of its own behind (its new
// provider's, or its interval for a running one); a provider that a
// reload gives static keys only loses its freshness series, which would
// otherwise grow stale and alert.
func TestReloadJWKSMetricsFollowTheConfig(t *testing.T) {
	key := newKey(t)
	jwks := jwksOf(t, key)
	pemPath := filepath.Join(t.TempDir(), "public.pem")
	if err := os.WriteFile(pemPath, publicPEM(t, key), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	path, dbPath := filepath.Join(t.TempDir(), "config.yaml"), filepath.Join(t.TempDir(), "users.db")
	write := func(providers string) {
		t.Helper()
		doc := fmt.Sprintf("listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\nstore: {path: %s}\nproviders:\n%s", dbPath, providers)
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf("  - {name: idp, algorithms: [ES256], jwks_url: %s/jwks}\n", srv.URL))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := startService(context.Background(), cfg, serviceOptions{logger: discardLogger(), configPath: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.shutdown(0) })
	waitHealth(t, svc.grpcAddr.String(), healthpb.HealthCheckResponse_SERVING)
	series := func(provider string) []string {
		t.Helper()
		_, body := httpGet(t, "http://"+svc.httpAddr.String()+"/metrics")
		var out []string
		for line := range strings.Lines(body) {
			if strings.HasPrefix(line, "jwtauthz_jwks_") && strings.Contains(line, `provider="`+provider+`"`) {
				out = append(out, strings.TrimSpace(line))
			}
		}
		return out
	}
	has := func(provider, want string) bool {
		return slices.ContainsFunc(series(provider), func(s string) bool { return strings.HasPrefix(s, want) })
	}

	write(fmt.Sprintf("  - {name: idp, algorithms: [ES256], jwks_url: %s/jwks, jwks_refresh_interval: 2h}\n", srv.URL) +
		fmt.Sprintf("  - {name: extra, issuer: https://extra.example, algorithms: [ES256], jwks_url: %s/down}\n", srv.URL))
	if err := svc.reload("test"); err == nil {
		t.Fatal("a reload whose new provider's JWKS answers 503 succeeded")
	}
	if got := series("extra"); len(got) > 0 {
		t.Errorf("the failed reload's provider has series: %q", got)
	}
	if !has("idp", `jwtauthz_jwks_refresh_interval_seconds{provider="idp"} 3600`) {
		t.Errorf("the running provider's interval after a failed reload: %q, want 3600", series("idp"))
	}

	write(fmt.Sprintf("  - {name: idp, algorithms: [ES256], pem_files: [%s]}\n", pemPath))
	if err := svc.reload("test"); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"jwtauthz_jwks_refresh_interval_seconds", "jwtauthz_jwks_last_success_timestamp_seconds"} {
		if has("idp", gone) {
			t.Errorf("a provider with static keys only keeps %s: %q", gone, series("idp"))
		}
	}
	if !has("idp", `jwtauthz_jwks_refresh_total{provider="idp",result="success"}`) {
		t.Errorf("the provider's fetch count went: %q", series("idp"))
	}
}

// TestReloadSIGHUPBesideSIGTERM: a SIGHUP reload waiting on a slow
// identity provider (a new provider's first fetch) does not hold up
// SIGTERM: health turns NOT_SERVING at once, the fetch is abandoned and
// serve exits 0.
func TestReloadSIGHUPBesideSIGTERM(t *testing.T) {
	s := servetest.New(t)
	hit, release := make(chan struct{}, 1), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hit <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		http.Error(w, "too late", http.StatusServiceUnavailable)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	c := startChild(t, s.ConfigPath, nil, "--drain", "1s", "--watch=false")
	waitHealth(t, c.grpcAddr, healthpb.HealthCheckResponse_SERVING)
	doc, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteConfig(t, string(doc)+fmt.Sprintf("  - {name: slow, issuer: https://slow.example, algorithms: [ES256], jwks_url: %s/jwks}\n", slow.URL))
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	<-hit
	start := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for healthStatus(t, c.grpcAddr, authzService) == healthpb.HealthCheckResponse_SERVING {
		if time.Since(start) > time.Second {
			t.Fatal("still SERVING 1s after SIGTERM: the SIGHUP reload holds up the shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := c.wait(t, 10*time.Second); code != 0 {
		t.Errorf("serve exited %d, want 0; logs:\n%s", code, c.logs.String())
	}
	if !strings.Contains(c.logs.String(), "config reload failed") {
		t.Errorf("the abandoned reload is not logged as failed; logs:\n%s", c.logs.String())
	}
}

// TestServeSIGHUPDuringStart: a SIGHUP sent while serve is still starting
// (here waiting for the bbolt lock a previous process holds) does not end
// it, as SIGHUP's default action would: serve starts and reloads.
func TestServeSIGHUPDuringStart(t *testing.T) {
	s := servetest.New(t)
	held, err := bolt.Open(bolt.Options{Path: s.DBPath})
	if err != nil {
		t.Fatal(err)
	}
	c := spawnChild(t, s.ConfigPath, nil, "--drain", "0")
	time.Sleep(500 * time.Millisecond) // serve waits for the lock (2s at most)
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := held.Close(); err != nil {
		t.Fatal(err)
	}
	grpcAddr, _ := listening(t, c.logs)
	waitHealth(t, grpcAddr, healthpb.HealthCheckResponse_SERVING)
	eventually(t, 3*time.Second, "the SIGHUP sent during start-up reloads", func() bool {
		return strings.Contains(c.logs.String(), `"trigger":"SIGHUP"`)
	})
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := c.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("serve exited %d, want 0; logs:\n%s", code, c.logs.String())
	}
}
