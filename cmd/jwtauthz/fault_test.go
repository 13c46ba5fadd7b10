package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/signing"
	"github.com/jwtauthz/jwtauthz/store/bolt"
)

// fsizeEnv names a file size limit (bytes) that a child serve sets on
// itself before main runs: bbolt then fails to grow its file with EFBIG,
// as on a full disk. Go ignores SIGXFSZ, so the write returns the error.
const fsizeEnv = "JWTAUTHZ_TEST_FSIZE"

func init() {
	v := os.Getenv(fsizeEnv)
	if v == "" || os.Getenv("JWTAUTHZ_TEST_MAIN") != "1" {
		return
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err == nil {
		err = syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: n, Max: n})
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s=%s: %v\n", fsizeEnv, v, err)
		os.Exit(3)
	}
}

// startJWKS runs the service in this process with e's key served as a
// JWK Set at url.
func startJWKS(t *testing.T, e *servetest.Env, url string) *service {
	t.Helper()
	e.WriteConfig(t, fmt.Sprintf("listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\nstore: {path: %s}\nproviders:\n  - algorithms: [ES256]\n    jwks_url: %s\n", e.DBPath, url))
	return startEnv(t, e, serviceOptions{})
}

// mintKID mints a token for user with kid as its kid ("": the key's own).
func mintKID(t *testing.T, e *servetest.Env, user, kid string) string {
	t.Helper()
	return e.MintWith(t, user, signing.Options{TTL: time.Hour, Now: time.Now(), KID: kid})
}

// TestFaultJWKSDownAtStart starts serve while its JWKS URL refuses
// connections: it must stay NOT_SERVING (gRPC health and /readyz) and answer
// every Check 503 keys_unavailable; when the server comes up at that URL, it
// must recover by itself and allow.
func TestFaultJWKSDownAtStart(t *testing.T) {
	s := servetest.New(t)
	// Take a free port and release it: the JWKS server is down, connections
	// are refused, until it listens there again.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	jwksAddr := l.Addr().String()
	l.Close()
	svc := startJWKS(t, s, "http://"+jwksAddr+"/jwks.json")
	grpcAddr, readyz := svc.grpcAddr.String(), "http://"+svc.httpAddr.String()+"/readyz"
	cc := dialCheck(t, grpcAddr)
	tok := mintKID(t, s, "alice", "")

	// Down for 1.5 s: the first fetch and at least one retry fail.
	downUntil := time.Now().Add(1500 * time.Millisecond)
	checks := 0
	for time.Now().Before(downUntil) {
		for _, svcName := range []string{"", authzService} {
			if got := healthStatus(t, grpcAddr, svcName); got != healthpb.HealthCheckResponse_NOT_SERVING {
				t.Fatalf("health %q with the JWKS server down = %v, want NOT_SERVING", svcName, got)
			}
		}
		if code, _ := httpGet(t, readyz); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz with the JWKS server down = %d, want 503", code)
		}
		a, err := cc.check(context.Background(), tok)
		if err != nil {
			t.Fatalf("Check with the JWKS server down: gRPC error %v, want a CheckResponse", err)
		}
		if a.allow || a.reason != "keys_unavailable" || a.code != codes.Unavailable || a.http != 503 || a.retry == "" {
			t.Fatalf("Check with the JWKS server down: %+v, want UNAVAILABLE, 503 keys_unavailable with retry-after", a)
		}
		checks++
		time.Sleep(50 * time.Millisecond)
	}

	// The server comes back at the same address.
	var hits atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.JWKS(t))
	})}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if l, err = net.Listen("tcp", jwksAddr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listen again on %s: %v", jwksAddr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	back := time.Now()

	waitHealth(t, grpcAddr, healthpb.HealthCheckResponse_SERVING)
	recovered := time.Since(back)
	if code, _ := httpGet(t, readyz); code != http.StatusOK {
		t.Errorf("/readyz after recovery = %d, want 200", code)
	}
	a, err := cc.check(context.Background(), tok)
	if err != nil || !a.allow {
		t.Fatalf("Check after recovery: %+v, %v; want an allow", a, err)
	}
	t.Logf("%d Checks answered 503 keys_unavailable while down; SERVING %v after the JWKS server came back (%d fetches)",
		checks, recovered.Round(time.Millisecond), hits.Load())
}

// TestFaultJWKSSlow makes the JWKS server hang longer than the 5 s fetch
// timeout once the set is loaded. Checks whose kid is unknown trigger a
// refresh: each must end within its own deadline, or within the fetch
// timeout when it has none, and never allow; one fetch at most is made
// (rate limit); Checks with the known kid are not held up; and once the
// fetch has timed out the goroutines are back near where they were.
func TestFaultJWKSSlow(t *testing.T) {
	s := servetest.New(t)
	var slow atomic.Bool
	var hits atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if slow.Load() {
			select {
			case <-time.After(8 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.JWKS(t))
	}))
	t.Cleanup(jwks.Close)
	svc := startJWKS(t, s, jwks.URL)
	grpcAddr := svc.grpcAddr.String()
	waitHealth(t, grpcAddr, healthpb.HealthCheckResponse_SERVING)
	cc := dialCheck(t, grpcAddr)
	known := mintKID(t, s, "known", "")
	if a, err := cc.check(context.Background(), known); err != nil || !a.allow {
		t.Fatalf("known kid before the fault: %+v, %v", a, err)
	}
	baseline := settledGoroutines(0)
	slow.Store(true)
	hitsBefore := hits.Load()

	const n = 200 // half with a 1 s deadline, half without one
	const deadline, fetchTimeout = time.Second, 5 * time.Second
	type result struct {
		withDeadline bool
		took         time.Duration
		a            answer
		err          error
	}
	results := make([]result, n)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchdog := time.AfterFunc(30*time.Second, cancel)
	defer watchdog.Stop()
	var wg sync.WaitGroup
	var peak atomic.Int64
	for i := range n {
		tok := mintKID(t, s, fmt.Sprintf("slow-%d", i), fmt.Sprintf("unknown-kid-%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx := ctx
			if i%2 == 0 {
				var c context.CancelFunc
				rctx, c = context.WithTimeout(ctx, deadline)
				defer c()
			}
			start := time.Now()
			a, err := cc.check(rctx, tok)
			results[i] = result{withDeadline: i%2 == 0, took: time.Since(start), a: a, err: err}
			if g := int64(runtime.NumGoroutine()); g > peak.Load() {
				peak.Store(g)
			}
		}()
	}
	// While the refresh hangs, a token whose kid is known is answered at once.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if a, err := cc.check(context.Background(), known); err != nil || !a.allow {
		t.Errorf("known kid during the slow fetch: %+v, %v", a, err)
	} else if took := time.Since(start); took > 2*time.Second {
		t.Errorf("known kid during the slow fetch took %v", took)
	}
	wg.Wait()

	var maxWith, maxWithout time.Duration
	for i, r := range results {
		if r.err == nil && r.a.allow {
			t.Fatalf("Check %d with an unknown kid was allowed", i)
		}
		if r.withDeadline {
			maxWith = max(maxWith, r.took)
			// The client may see its own DEADLINE_EXCEEDED first, or the
			// deny the server sends at that moment.
			if r.err != nil && status.Code(r.err) != codes.DeadlineExceeded {
				t.Errorf("Check %d (deadline %v): %v", i, deadline, r.err)
			}
			if r.err == nil && r.a.reason != "unknown_kid" {
				t.Errorf("Check %d (deadline %v): reason %q, want unknown_kid", i, deadline, r.a.reason)
			}
			if r.took > deadline+time.Second {
				t.Errorf("Check %d with a %v deadline took %v", i, deadline, r.took)
			}
			continue
		}
		maxWithout = max(maxWithout, r.took)
		if r.err != nil || r.a.reason != "unknown_kid" {
			t.Errorf("Check %d (no deadline): %+v, %v; want a deny unknown_kid", i, r.a, r.err)
		}
		if r.took > fetchTimeout+2*time.Second {
			t.Errorf("Check %d without a deadline took %v, over the %v fetch timeout", i, r.took, fetchTimeout)
		}
	}
	if got := hits.Load() - hitsBefore; got != 1 {
		t.Errorf("JWKS fetches for %d unknown-kid Checks = %d, want 1", n, got)
	}

	// Another burst: the rate limit allows no fetch, so none waits.
	again := make([]string, n)
	for i := range again {
		again[i] = mintKID(t, s, "again", fmt.Sprintf("other-kid-%d", i))
	}
	start = time.Now()
	for _, tok := range again {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := cc.check(ctx, tok)
			if err != nil || a.reason != "unknown_kid" {
				t.Errorf("second burst: %+v, %v", a, err)
			}
		}()
	}
	wg.Wait()
	burst := time.Since(start)
	if burst > 3*time.Second {
		t.Errorf("a second burst of %d unknown-kid Checks took %v: they waited", n, burst)
	}
	if got := hits.Load() - hitsBefore; got != 1 {
		t.Errorf("JWKS fetches after the second burst = %d, want still 1", got)
	}
	after := settledGoroutines(baseline + 10)
	if after > baseline+10 {
		t.Errorf("goroutines: %d before the fault, %d after it: a pile-up", baseline, after)
	}
	t.Logf("unknown kid: slowest with a %v deadline %v, slowest without %v; %d JWKS fetch for %d+%d Checks (second burst %v); goroutines %d before, peak %d, %d after",
		deadline, maxWith.Round(time.Millisecond), maxWithout.Round(time.Millisecond), hits.Load()-hitsBefore, n, n,
		burst.Round(time.Millisecond), baseline, peak.Load(), after)
}

// settledGoroutines waits up to 10 s for the goroutine count to reach want
// (0: to stop changing) and returns it.
func settledGoroutines(want int) int {
	deadline := time.Now().Add(10 * time.Second)
	last := runtime.NumGoroutine()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n := runtime.NumGoroutine()
		if (want > 0 && n <= want) || (want == 0 && n == last) {
			return n
		}
		last = n
	}
	return last
}

// TestFaultStoreWriteFailure runs serve with a file size limit (RLIMIT_FSIZE)
// so that bbolt cannot grow its file, as on a full disk: a real write
// failure, with no fake. New users get 503 store_unavailable; users already
// known are still allowed; afterwards the file is consistent and holds every
// allowed user once, and serve started without the limit creates the
// refused users.
func TestFaultStoreWriteFailure(t *testing.T) {
	s := servetest.New(t)
	const limit = 64 << 10 // bbolt grows its file 32 KiB, 64 KiB, 128 KiB, ...
	c := startChild(t, s.ConfigPath, []string{fsizeEnv + "=" + strconv.Itoa(limit)}, "--drain", "0")
	waitHealth(t, c.grpcAddr, healthpb.HealthCheckResponse_SERVING)
	cc := dialCheck(t, c.grpcAddr)
	ctx := context.Background()

	ids := map[string]string{} // allowed users and their ids
	var refused []string
	for i := 0; len(refused) < 5; i++ {
		if i == 5000 {
			t.Fatalf("5000 users created under a %d-byte file size limit: no write failed", limit)
		}
		name := fmt.Sprintf("user-%04d", i)
		a, err := cc.check(ctx, s.Mint(t, name, time.Hour))
		if err != nil {
			t.Fatalf("Check of new user %s: gRPC error %v", name, err)
		}
		switch {
		case a.allow:
			if len(refused) > 0 {
				// A later write may fit again (freed pages); it must then
				// be a whole, durable user like any other.
				t.Logf("user %s created after a refusal", name)
			}
			ids[name] = a.userID
		case a.reason == "store_unavailable" && a.code == codes.Unavailable && a.http == 503 && a.retry != "":
			refused = append(refused, name)
		default:
			t.Fatalf("Check of new user %s: %+v, want an allow or 503 store_unavailable", name, a)
		}
	}
	if len(ids) == 0 {
		t.Fatal("no user was created before the first write failure")
	}
	// Known users are served from memory.
	known := 0
	for name, id := range ids {
		a, err := cc.check(ctx, s.Mint(t, name, time.Hour))
		if err != nil || !a.allow || a.userID != id || a.newUser {
			t.Fatalf("known user %s while writes fail: %+v, %v; want an allow of id %s", name, a, err, id)
		}
		if known++; known == 50 {
			break
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	code := c.wait(t, 20*time.Second)
	if !strings.Contains(c.logs.String(), "file too large") {
		t.Errorf("the refusals were not caused by EFBIG; logs:\n%s", c.logs.String())
	}
	// The final flush of the known users' logins needs to grow the file too,
	// so it fails and serve says so with a non-zero exit; those logins are
	// lost as on any full disk, and the file stays consistent (below).
	t.Logf("%d users created, then %d refused with 503 under a %d-byte limit; %d known users allowed; serve exited %d",
		len(ids), len(refused), limit, known, code)

	checkFile := func() map[string]string {
		users := storedUsers(t, s.DBPath)
		for name, id := range ids {
			u, ok := users[name]
			if !ok || strconv.FormatUint(u.GetId(), 10) != id {
				t.Fatalf("allowed user %s (id %s): in the file %v, %v", name, id, ok, u)
			}
		}
		got := map[string]string{}
		for name, u := range users {
			got[name] = strconv.FormatUint(u.GetId(), 10)
		}
		return got
	}
	before := checkFile()
	for _, name := range refused {
		if _, ok := before[name]; ok {
			t.Errorf("user %s was refused with 503 but is in the file", name)
		}
	}
	db, err := bolt.Open(bolt.Options{Path: s.DBPath})
	if err != nil {
		t.Fatalf("store.Open after the write failures: %v", err)
	}
	db.Close()

	// Without the limit the same file takes new users again.
	c = startChild(t, s.ConfigPath, nil, "--drain", "0")
	waitHealth(t, c.grpcAddr, healthpb.HealthCheckResponse_SERVING)
	cc = dialCheck(t, c.grpcAddr)
	for _, name := range refused {
		a, err := cc.check(ctx, s.Mint(t, name, time.Hour))
		if err != nil || !a.allow || !a.newUser {
			t.Fatalf("refused user %s without the limit: %+v, %v; want a new user", name, a, err)
		}
		ids[name] = a.userID
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t, 20*time.Second); code != 0 {
		t.Errorf("serve without the limit exited %d", code)
	}
	checkFile()
}

// TestReadyWithOneProviderDown: one identity provider's JWKS never loads.
// Health waits the start-up grace for it, then turns SERVING on the other
// provider's keys: its users are allowed, the down provider's tokens get
// 503 keys_unavailable, never an allow.
func TestReadyWithOneProviderDown(t *testing.T) {
	s := servetest.New(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(down.Close)
	s.WriteConfig(t, fmt.Sprintf("listen: 127.0.0.1:0\nhttp_listen: \"\"\nstore: {path: %s}\nproviders:\n"+
		"  - {name: up, algorithms: [ES256], pem_files: [%s]}\n"+
		"  - {name: down, issuer: https://down.example, algorithms: [ES256], jwks_url: %s}\n", s.DBPath, s.PublicPEM, down.URL))
	const grace = 700 * time.Millisecond
	start := time.Now()
	svc := startEnv(t, s, serviceOptions{readyGrace: grace})
	addr := svc.grpcAddr.String()
	if st := healthStatus(t, addr, authzService); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health at start = %v, want NOT_SERVING while the grace lasts", st)
	}
	waitHealth(t, addr, healthpb.HealthCheckResponse_SERVING)
	if took := time.Since(start); took < grace {
		t.Errorf("SERVING after %v, before the %v grace", took, grace)
	}
	cc := dialCheck(t, addr)
	if a, err := cc.check(context.Background(), s.Mint(t, "alice", time.Hour)); err != nil || !a.allow {
		t.Errorf("a user of the provider that is up: %+v %v, want allowed", a, err)
	}
	downTok := s.MintWith(t, "bob", signing.Options{TTL: time.Hour, Now: time.Now(), Issuer: "https://down.example"})
	if a, err := cc.check(context.Background(), downTok); err != nil || a.allow || a.http != 503 || a.reason != "keys_unavailable" {
		t.Errorf("a token of the provider that is down: %+v %v, want 503 keys_unavailable", a, err)
	}
}

// TestHTTPListenerBoundsIdleConnections opens 500 connections to
// http_listen that never send a request: at most maxHTTPConns are
// accepted, each is closed once its read times out, and the goroutines
// they held are gone; /metrics still answers.
func TestHTTPListenerBoundsIdleConnections(t *testing.T) {
	s := servetest.New(t)
	const timeout = 400 * time.Millisecond
	svc := startEnv(t, s, serviceOptions{httpTimeout: timeout})
	addr := svc.httpAddr.String()
	if code, _ := httpGet(t, "http://"+addr+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	before := settledGoroutines(0)
	var conns []net.Conn
	for range 500 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	time.Sleep(timeout / 4)
	peak := runtime.NumGoroutine()
	if held := peak - before; held > 3*maxHTTPConns {
		t.Errorf("500 idle connections hold %d goroutines, want at most a few per accepted connection (%d accepted)", held, maxHTTPConns)
	}
	// Every accepted connection is closed by the server once its read
	// deadline passes.
	closed := 0
	buf := make([]byte, 1)
	for _, c := range conns[:maxHTTPConns] {
		c.SetReadDeadline(time.Now().Add(5 * timeout))
		if _, err := c.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
	}
	if closed < maxHTTPConns/2 {
		t.Errorf("%d of the first %d idle connections closed by the server, want them closed after %v", closed, maxHTTPConns, timeout)
	}
	for _, c := range conns {
		c.Close()
	}
	after := settledGoroutines(before + 5)
	t.Logf("goroutines: %d before, %d with 500 idle connections, %d after", before, peak, after)
	if code, _ := httpGet(t, "http://"+addr+"/healthz"); code != 200 {
		t.Errorf("/healthz after the idle connections: %d", code)
	}
}

// TestDiscoveryIssuerMismatchNeverServes: the discovery document names
// another issuer than the configured one. No key is loaded from it: health
// stays NOT_SERVING and every Check is 503 keys_unavailable, never an
// allow, though the token is signed by the key the document points at.
func TestDiscoveryIssuerMismatchNeverServes(t *testing.T) {
	s := servetest.New(t)
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/realms/corp/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer": "http://keycloak.internal:8080/realms/corp", "jwks_uri": "%s/certs"}`, srv.URL)
		case "/certs":
			w.Write(s.JWKS(t))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	issuer := srv.URL + "/realms/corp"
	s.WriteConfig(t, fmt.Sprintf("listen: 127.0.0.1:0\nhttp_listen: 127.0.0.1:0\nstore: {path: %s}\nproviders:\n  - {algorithms: [ES256], issuer: %q, discovery: true}\n", s.DBPath, issuer))
	svc := startEnv(t, s, serviceOptions{readyGrace: 200 * time.Millisecond})
	cc := dialCheck(t, svc.grpcAddr.String())
	tok := s.MintWith(t, "alice", signing.Options{TTL: time.Hour, Now: time.Now(), Issuer: issuer})
	deadline := time.Now().Add(1500 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		a, err := cc.check(context.Background(), tok)
		if err != nil || a.allow || a.http != 503 || a.reason != "keys_unavailable" {
			t.Fatalf("Check %d: %+v %v, want 503 keys_unavailable", n, a, err)
		}
		if st := healthStatus(t, svc.grpcAddr.String(), authzService); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("health = %v, want NOT_SERVING", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, _ := httpGet(t, "http://"+svc.httpAddr.String()+"/readyz"); code != 503 {
		t.Errorf("/readyz = %d, want 503", code)
	}
}
