package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/signing"
	"github.com/jwtauthz/jwtauthz/internal/testlog"
	"github.com/jwtauthz/jwtauthz/store/bolt"
)

// TestMain lets a test run this binary's main as a child process, so SIGTERM
// handling is tested on a real process.
func TestMain(m *testing.M) {
	if os.Getenv("JWTAUTHZ_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startEnv loads e's config and starts the service in this process, as
// serve does; it shuts down when the test ends.
func startEnv(t *testing.T, e *servetest.Env, o serviceOptions) *service {
	t.Helper()
	if o.logger == nil {
		o.logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	svc, err := startService(context.Background(), e.Config(t), o)
	if err != nil {
		t.Fatalf("startService: %v", err)
	}
	t.Cleanup(func() { _ = svc.shutdown(0) })
	return svc
}

// listening waits for serve's start-up log line and returns its addresses.
func listening(t *testing.T, logs interface{ String() string }) (grpcAddr, httpAddr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				GRPC string `json:"grpc"`
				HTTP string `json:"http"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "jwtauthz serving" {
				return rec.GRPC, rec.HTTP
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("serve did not start; logs:\n%s", logs.String())
	return "", ""
}

func healthStatus(t *testing.T, addr, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

func waitHealth(t *testing.T, addr string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if healthStatus(t, addr, "") == want && healthStatus(t, addr, authzService) == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("health never became %v", want)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeEndToEnd(t *testing.T) {
	s := servetest.New(t)
	logs := &testlog.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--drain", "300ms", "--log-format", "json"},
			func(k string) string {
				if k == "JWTAUTHZ_CONFIG" {
					return s.ConfigPath
				}
				return ""
			}, strings.NewReader(""), io.Discard, logs)
	}()
	grpcAddr, httpAddr := listening(t, logs)
	waitHealth(t, grpcAddr, healthpb.HealthCheckResponse_SERVING)

	if code, body := httpGet(t, "http://"+httpAddr+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, _ := httpGet(t, "http://"+httpAddr+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d, want 200", code)
	}

	tok := s.Mint(t, "alice", time.Hour)
	for range 2 {
		out, _, code := runForTest(t, "check", "--addr", grpcAddr, "--token", tok)
		if code != 0 || !strings.Contains(out, "x-auth-user: alice") {
			t.Fatalf("check: exit %d, output:\n%s", code, out)
		}
	}
	if out, _, code := runForTest(t, "check", "--addr", grpcAddr); code != 1 || !strings.Contains(out, "missing_token") {
		t.Errorf("check without token: exit %d, output:\n%s", code, out)
	}
	_, metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	for _, want := range []string{
		`jwtauthz_checks_total{decision="allow",provider="default",reason="ok",route="default"} 2`,
		`jwtauthz_checks_total{decision="deny",provider="none",reason="missing_token",route="default"} 1`,
		`jwtauthz_users_created_total 1`,
		`jwtauthz_check_duration_seconds_count 3`,
		`jwtauthz_serving 1`,
		// Every name SPEC.md lists, for a provider with static keys too.
		`jwtauthz_jwks_refresh_total{provider="default",result="success"} 0`,
		`jwtauthz_jwks_refresh_total{provider="default",result="failure"} 0`,
		`jwtauthz_build_info{`,
		`jwtauthz_token_cache_requests_total{result="hit"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), strings.Split(tok, ".")[2]) {
		t.Error("a token appears in the logs")
	}

	// SIGTERM (main's NotifyContext cancels the context): NOT_SERVING first,
	// still answering during the drain, then a clean exit.
	cancel()
	waitHealth(t, grpcAddr, healthpb.HealthCheckResponse_NOT_SERVING)
	if code, _ := httpGet(t, "http://"+httpAddr+"/readyz"); code != 503 {
		t.Errorf("/readyz while draining = %d, want 503", code)
	}
	if _, m := httpGet(t, "http://"+httpAddr+"/metrics"); !strings.Contains(m, "jwtauthz_serving 0") {
		t.Errorf("/metrics while draining lacks jwtauthz_serving 0")
	}
	if out, _, code := runForTest(t, "check", "--addr", grpcAddr, "--token", tok); code != 0 {
		t.Errorf("check during drain: exit %d\n%s", code, out)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	db, err := bolt.Open(bolt.Options{Path: s.DBPath})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.User(context.Background(), "default", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.GetLoginCount() != 3 {
		t.Errorf("login_count on disk = %d, want 3", u.GetLoginCount())
	}
}

// TestServeSIGTERMFlushes runs serve as a real child process, sends SIGTERM
// right after a burst of logins, and checks the write-behind state reached
// the file and the process exited 0.
func TestServeSIGTERMFlushes(t *testing.T) {
	s := servetest.New(t)
	logs := &testlog.Buffer{}
	cmd := exec.Command(os.Args[0], "serve", "--config", s.ConfigPath, "--drain", "0", "--log-format", "json")
	cmd.Env = append(os.Environ(), "JWTAUTHZ_TEST_MAIN=1")
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	grpcAddr, _ := listening(t, logs)
	waitHealth(t, grpcAddr, healthpb.HealthCheckResponse_SERVING)
	tok := s.Mint(t, "bob", time.Hour)
	const logins = 25
	for range logins {
		if out, _, code := runForTest(t, "check", "--addr", grpcAddr, "--token", tok); code != 0 {
			t.Fatalf("check: exit %d\n%s", code, out)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve exited with %v, want status 0; logs:\n%s", err, logs.String())
	}
	db, err := bolt.Open(bolt.Options{Path: s.DBPath})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := db.User(context.Background(), "default", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if u.GetLoginCount() != logins {
		t.Errorf("login_count on disk = %d, want %d: pending writes were not flushed", u.GetLoginCount(), logins)
	}
}

func TestServeSecondProcessGetsClearError(t *testing.T) {
	s := servetest.New(t)
	logs := &testlog.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", s.ConfigPath, "--drain", "0", "--log-format", "json"},
			func(string) string { return "" }, strings.NewReader(""), io.Discard, logs)
	}()
	listening(t, logs)
	defer func() { cancel(); <-done }()

	start := time.Now()
	_, stderr, code := runForTest(t, "serve", "--config", s.ConfigPath, "--drain", "0")
	if code == 0 || !strings.Contains(stderr, s.DBPath) || !strings.Contains(stderr, "another jwtauthz process") {
		t.Errorf("second serve: exit %d, stderr %q; want a non-zero exit naming the file and the cause", code, stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second serve took %v to fail", d)
	}
}

func TestServeBadConfigExitsNonZero(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte("providers:\n  - name: a\n    algoritms: [RS512]\n"), 0o600)
	_, stderr, code := runForTest(t, "serve", "--config", path)
	if code == 0 || !strings.Contains(stderr, `unknown key "providers[0].algoritms"`) || !strings.Contains(stderr, path) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runForTest(t, "serve")
	if code != 2 || !strings.Contains(stderr, "JWTAUTHZ_CONFIG") {
		t.Errorf("no config: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runForTest(t, "serve", "--bogus")
	if code != 2 || !strings.Contains(stderr, "bogus") {
		t.Errorf("bad flag: exit %d, stderr %q", code, stderr)
	}
}

func TestVerify(t *testing.T) {
	s := servetest.New(t)
	issued := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tok, err := signing.Mint(s.Key, "carol", signing.Options{TTL: time.Hour, Now: issued})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"valid as of --at (RFC 3339)", []string{"--at", "2026-01-01T12:30:00Z", tok}, 0, []string{"valid", "provider: default", "user:     carol", `"username": "carol"`}},
		{"valid as of --at (Unix seconds)", []string{"--at", fmt.Sprint(issued.Add(time.Minute).Unix()), tok}, 0, []string{"valid"}},
		{"expired now", []string{tok}, 1, []string{"invalid", "reason:   expired", "provider: default"}},
		{"within leeway", []string{"--at", "2026-01-01T13:00:20Z", tok}, 0, []string{"valid"}},
		{"past leeway", []string{"--at", "2026-01-01T13:00:31Z", tok}, 1, []string{"reason:   expired"}},
		{"before iat", []string{"--at", "2026-01-01T11:00:00Z", tok}, 1, []string{"reason:   not_yet_valid"}},
		{"tampered", []string{"--at", "2026-01-01T12:30:00Z", tok[:len(tok)-4] + "AAAA"}, 1, []string{"reason:   invalid_signature"}},
		{"bad --at", []string{"--at", "yesterday", tok}, 2, nil},
		// verify reads a token exactly as Check reads the authorization
		// header: Go's base64 decoder would skip the newline, Check refuses it.
		{"newline inside the token", []string{"--at", "2026-01-01T12:30:00Z", tok[:20] + "\n" + tok[20:]}, 1, []string{"invalid", "reason:   malformed", "byte 20 is not allowed"}},
		{"with its Bearer prefix", []string{"--at", "2026-01-01T12:30:00Z", "Bearer " + tok}, 0, []string{"valid"}},
		{"another scheme", []string{"--at", "2026-01-01T12:30:00Z", "Basic " + tok}, 1, []string{"invalid", "reason:   malformed"}},
		{"explicit empty token", []string{"--at", "2026-01-01T12:30:00Z", ""}, 1, []string{"invalid", "reason:   malformed"}},
		{"two tokens", []string{"--at", "2026-01-01T12:30:00Z", tok, tok}, 2, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runForTest(t, append([]string{"verify", "--config", s.ConfigPath}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.wantCode, out, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	// The token can also come on stdin, with its Bearer prefix.
	var out, errOut bytes.Buffer
	err = run(context.Background(), []string{"verify", "--config", s.ConfigPath, "--at", "2026-01-01T12:30:00Z"},
		func(string) string { return "" }, strings.NewReader("Bearer "+tok+"\n"), &out, &errOut)
	if err != nil || !strings.HasPrefix(out.String(), "valid\n") {
		t.Errorf("stdin: err %v, out %q, stderr %q", err, out.String(), errOut.String())
	}
}

func TestDemo(t *testing.T) {
	out, stderr, code := runForTest(t, "demo")
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{
		"decision: allow", "set header:  x-auth-user: alice", "remove header: x-auth-role",
		`"error":"expired"`, `"error":"invalid_signature"`, "Invalid JWT schema: username", `"error":"missing_token"`,
		"alice", "bob", `"error":"user_inactive"`, "http status: 403", "set header:  x-auth-user: bob",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo transcript lacks %q", want)
		}
	}
}

// TestServeFlagsOverrideTheFile: --listen, --http-listen and --db override
// the file's listen, http_listen and store.path; --http-listen "" and
// --http-listen off disable HTTP, as http_listen: "" does.
func TestServeFlagsOverrideTheFile(t *testing.T) {
	tests := []struct {
		name     string
		httpFlag []string
		wantHTTP bool
	}{
		{"empty disables", []string{"--http-listen", ""}, false},
		{"off disables", []string{"--http-listen=off"}, false},
		{"an address", []string{"--http-listen", "127.0.0.1:0"}, true},
		{"absent keeps the file's", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := servetest.New(t)
			db := filepath.Join(t.TempDir(), "flag.db")
			logs := &testlog.Buffer{}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			args := append([]string{"serve", "--config", s.ConfigPath, "--drain", "0", "--log-format", "json", "--listen", "127.0.0.1:0", "--db", db}, tt.httpFlag...)
			go func() {
				done <- run(ctx, args, func(string) string { return "" }, strings.NewReader(""), io.Discard, logs)
			}()
			grpcAddr, httpAddr := listening(t, logs)
			if (httpAddr != "off") != tt.wantHTTP { // the log says "off" for no listener
				t.Errorf("HTTP listens on %q; want it on: %v", httpAddr, tt.wantHTTP)
			}
			waitHealth(t, grpcAddr, healthpb.HealthCheckResponse_SERVING)
			if _, err := os.Stat(db); err != nil {
				t.Errorf("--db %s: %v", db, err)
			}
			if _, err := os.Stat(s.DBPath); !os.IsNotExist(err) {
				t.Errorf("the file's store.path was opened despite --db: %v", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
}
