package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/jwtauthz/jwtauthz/internal/testlog"
	"github.com/jwtauthz/jwtauthz/store"
	"github.com/jwtauthz/jwtauthz/store/etcd"
	"github.com/jwtauthz/jwtauthz/store/etcd/etcdtest"
	"github.com/jwtauthz/jwtauthz/store/storetest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// propagationBound is how soon a change through one replica must reach
// the others' memory (README.md: a deactivation applies from the next
// request on, within a second on every replica).
const propagationBound = time.Second

// open opens a store on endpoint under prefix, waits until it loaded the
// users and closes it when the test ends.
func open(t *testing.T, endpoint, prefix string) *etcd.Store {
	t.Helper()
	s := openNoWait(t, endpoint, prefix)
	waitReady(t, s)
	return s
}

func waitReady(t *testing.T, s *etcd.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

func openNoWait(t *testing.T, endpoint, prefix string) *etcd.Store {
	t.Helper()
	return openLogging(t, endpoint, prefix, t.Output())
}

// openLogging opens a store that logs to w, without waiting for it.
func openLogging(t *testing.T, endpoint, prefix string, w io.Writer) *etcd.Store {
	t.Helper()
	s, err := etcd.Open(etcd.Options{
		Endpoints:      []string{endpoint},
		Prefix:         prefix,
		DialTimeout:    time.Second,
		RequestTimeout: 2 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(w, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSuite(t *testing.T) {
	srv := etcdtest.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		prefix := fmt.Sprintf("/suite/%d/", n.Add(1))
		return func(t *testing.T) storetest.Store { return open(t, srv.Endpoint(), prefix) }
	})
}

func mustLogin(t *testing.T, s *etcd.Store, l store.Login) store.Identity {
	t.Helper()
	id, err := s.Login(context.Background(), l)
	if err != nil {
		t.Fatalf("Login(%q, %q): %v", l.Provider, l.Username, err)
	}
	return id
}

// count counts the keys below prefix+dir, straight from etcd.
func count(t *testing.T, c *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// waitLogin polls the Logins of l on s until want holds, and returns how
// long after start that was; it fails the test after limit.
func waitLogin(t *testing.T, s *etcd.Store, l store.Login, start time.Time, limit time.Duration, want func(store.Identity) bool) time.Duration {
	t.Helper()
	for {
		id, err := s.Login(context.Background(), l)
		if err == nil && want(id) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("after %v, Login(%q) = %+v, %v; the change did not arrive", limit, l.Username, id, err)
		}
		time.Sleep(2 * time.Millisecond) // a poll with a deadline, not a wait for time
	}
}

func inactive(id store.Identity) bool { return !id.Active }
func active(id store.Identity) bool   { return id.Active }

func TestReplicasCreateOnce(t *testing.T) {
	const n = 200
	srv := etcdtest.Start(t)
	replicas := []*etcd.Store{open(t, srv.Endpoint(), "/r/"), open(t, srv.Endpoint(), "/r/"), open(t, srv.Endpoint(), "/r/")}

	id := storetest.FirstLoginRace(t, n, func(i int) storetest.Store { return replicas[i%len(replicas)] })
	if id.ID != 1 {
		t.Errorf("the racers' ID = %d, want 1", id.ID)
	}
	c := srv.Client(t)
	if users, idN := count(t, c, "/r/users/"), count(t, c, "/r/ids/"); users != 1 || idN != 1 {
		t.Errorf("etcd holds %d users, %d ids; want 1, 1", users, idN)
	}

	// The replicas' write-behind counts add up, however their merges race.
	flushErrs := make([]error, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() { flushErrs[i] = r.Flush() })
	}
	wg.Wait()
	for _, err := range flushErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	u, err := replicas[0].User(context.Background(), "p", "racer")
	if err != nil {
		t.Fatal(err)
	}
	if u.GetLoginCount() != n {
		t.Errorf("login_count = %d, want %d", u.GetLoginCount(), n)
	}
	if want := t0.Add((n - 1) * time.Second); !u.GetLastLogin().AsTime().Equal(want) {
		t.Errorf("last_login = %v, want %v", u.GetLastLogin().AsTime(), want)
	}
}

func TestIDsUniqueAcrossReplicas(t *testing.T) {
	const perReplica = 30
	srv := etcdtest.Start(t)
	replicas := []*etcd.Store{open(t, srv.Endpoint(), "/u/"), open(t, srv.Endpoint(), "/u/"), open(t, srv.Endpoint(), "/u/")}

	// Every replica creates users while the first one pages through them.
	var wg sync.WaitGroup
	var done atomic.Int32
	errc := make(chan error, len(replicas))
	for r, s := range replicas {
		wg.Go(func() {
			defer done.Add(1)
			for i := range perReplica {
				if _, err := s.Login(context.Background(), store.Login{Provider: "p", Username: fmt.Sprintf("r%d-u%d", r, i), At: t0}); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	seen := storetest.PageWhile(t, replicas[0], func() bool { return done.Load() == int32(len(replicas)) })
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("creating users: %v", err)
	}

	const total = perReplica * 3
	if len(seen) != total {
		t.Fatalf("paging saw %d users, want %d: %v", len(seen), total, seen)
	}
	for i, id := range seen {
		if id != uint64(i+1) {
			t.Fatalf("paging saw ids %v, want 1..%d each once, in order", seen, total)
		}
	}
}

func TestDeactivationReachesEveryReplica(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b, c := open(t, srv.Endpoint(), "/d/"), open(t, srv.Endpoint(), "/d/"), open(t, srv.Endpoint(), "/d/")
	l := store.Login{Provider: "p", Username: "mallory", At: t0}
	created := mustLogin(t, a, l)
	// b and c know the user from their watch, or their first Login.
	for _, r := range []*etcd.Store{b, c} {
		if id := mustLogin(t, r, l); id != (store.Identity{ID: created.ID, Active: true}) {
			t.Fatalf("Login on another replica = %+v, want the active user %d", id, created.ID)
		}
	}

	// The delay is measured from the start of the admin call.
	start := time.Now()
	if _, err := a.SetActive(context.Background(), "p", "mallory", false); err != nil {
		t.Fatal(err)
	}
	if id := mustLogin(t, a, l); id.Active {
		t.Errorf("Login on the deactivating replica = %+v, want inactive at once", id)
	}
	for name, r := range map[string]*etcd.Store{"b": b, "c": c} {
		d := waitLogin(t, r, l, start, propagationBound, inactive)
		t.Logf("deactivation through a reached %s after %v", name, d)
	}

	start = time.Now()
	if _, err := b.SetActive(context.Background(), "p", "mallory", true); err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*etcd.Store{"a": a, "c": c} {
		d := waitLogin(t, r, l, start, propagationBound, active)
		t.Logf("reactivation through b reached %s after %v", name, d)
	}
}

func TestWriteBehindWithinASecond(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := open(t, srv.Endpoint(), "/b/"), open(t, srv.Endpoint(), "/b/")
	l := store.Login{Provider: "p", Username: "u", At: t0}
	mustLogin(t, a, l)
	l.At = t0.Add(time.Minute)
	mustLogin(t, a, l)
	// b has nothing pending: what it reads is what a wrote behind.
	start := time.Now()
	for {
		u, err := b.User(context.Background(), "p", "u")
		if err != nil {
			t.Fatal(err)
		}
		if u.GetLoginCount() == 2 && u.GetLastLogin().AsTime().Equal(l.At) {
			break
		}
		if time.Since(start) > 1500*time.Millisecond {
			t.Fatalf("after %v, login_count %d and last_login %v in etcd; want 2, %v within the 1s write-behind period",
				time.Since(start), u.GetLoginCount(), u.GetLastLogin().AsTime(), l.At)
		}
		time.Sleep(10 * time.Millisecond) // a poll with a deadline
	}
	t.Logf("write-behind reached etcd after %v", time.Since(start))
}

func TestWatchLostResumes(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compacted=%t", compact), func(t *testing.T) {
			srv := etcdtest.Start(t)
			p := startProxy(t, srv.Endpoint())
			logs := &testlog.Buffer{}
			a := openLogging(t, "http://"+p.addr(), "/w/", io.MultiWriter(logs, t.Output())) // through the proxy
			waitReady(t, a)
			b := open(t, srv.Endpoint(), "/w/")
			mallory := store.Login{Provider: "p", Username: "mallory", At: t0}
			gone := store.Login{Provider: "p", Username: "gone", At: t0}
			mustLogin(t, a, mallory)
			goneID := mustLogin(t, a, gone).ID

			// a loses etcd; meanwhile b deactivates mallory, an operator
			// deletes gone, and maybe the history is compacted.
			p.cut()
			if _, err := b.SetActive(context.Background(), "p", "mallory", false); err != nil {
				t.Fatal(err)
			}
			cli := srv.Client(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := cli.Delete(ctx, "/w/users/p/gone"); err != nil {
				t.Fatal(err)
			}
			if compact {
				srv.Compact(t)
			}
			// Still cut off: a answers from memory.
			if id := mustLogin(t, a, mallory); !id.Active {
				t.Fatalf("Login on the cut-off replica = %+v; it cannot have heard of the deactivation", id)
			}

			restored := time.Now()
			p.restore()
			d := waitLogin(t, a, mallory, restored, 15*time.Second, inactive)
			t.Logf("deactivation reached the replica %v after its connection came back", d)
			// gone was deleted while a was cut off: its next Login makes a new user.
			if id := mustLogin(t, a, gone); !id.New || id.ID == goneID {
				t.Errorf("Login of the deleted user = %+v, want a new user, not id %d", id, goneID)
			}
			if reloaded := strings.Contains(logs.String(), "reloading every user"); reloaded != compact {
				t.Errorf("the replica reloaded every user: %t, want %t (only after a compaction); logs:\n%s", reloaded, compact, logs)
			}
		})
	}
}

func TestEtcdDown(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := open(t, srv.Endpoint(), "/x/"), open(t, srv.Endpoint(), "/x/")
	known := store.Login{Provider: "p", Username: "known", At: t0}
	knownID := mustLogin(t, a, known).ID
	mustLogin(t, b, known)
	for _, r := range []*etcd.Store{a, b} {
		if err := r.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	srv.Stop()
	for i := range 5 {
		if id := mustLogin(t, a, known); id != (store.Identity{ID: knownID, Active: true}) {
			t.Fatalf("Login %d of a known user with etcd down = %+v, want active %d", i, id, knownID)
		}
	}
	// A new user needs etcd: an error, soon enough to answer a Check.
	// The client may not have noticed the outage at once; it must within
	// a few tries, and then fail fast.
	deadline := time.Now().Add(10 * time.Second)
	for {
		start := time.Now()
		_, err := a.Login(context.Background(), store.Login{Provider: "p", Username: "newcomer", At: t0})
		if err == nil {
			t.Fatal("Login of a new user with etcd down succeeded")
		}
		if errors.Is(err, etcd.ErrUnavailable) {
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("Login of a new user took %v to fail; want it fast", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Login of a new user = %v, want an error wrapping %v", err, etcd.ErrUnavailable)
		}
	}
	if _, err := a.User(context.Background(), "p", "known"); err == nil {
		t.Error("User with etcd down succeeded")
	}
	if err := a.Flush(); err == nil {
		t.Error("Flush with etcd down succeeded")
	}

	srv.Restart(t)
	// Without reopening: new users are created again, the pending counts
	// reach etcd, and the watch follows again.
	var id store.Identity
	deadline = time.Now().Add(15 * time.Second)
	for {
		var err error
		id, err = a.Login(context.Background(), store.Login{Provider: "p", Username: "newcomer", At: t0})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Login of a new user after etcd restarted: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // a poll with a deadline
	}
	if !id.New || id.ID <= knownID {
		t.Errorf("Login of a new user after restart = %+v, want a new id above %d", id, knownID)
	}
	if err := a.Flush(); err != nil {
		t.Fatalf("Flush after restart: %v", err)
	}
	u, err := a.User(context.Background(), "p", "known")
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(1 + 1 + 5); u.GetLoginCount() != want {
		t.Errorf("login_count = %d, want %d (created on a, 1 on b, 5 on a while etcd was down)", u.GetLoginCount(), want)
	}
	// b may take a moment to reconnect too.
	deadline = time.Now().Add(15 * time.Second)
	for {
		_, err := b.SetActive(context.Background(), "p", "known", false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SetActive after etcd restarted: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // a poll with a deadline
	}
	d := waitLogin(t, a, known, time.Now(), propagationBound, inactive)
	t.Logf("deactivation after the restart reached the other replica after %v", d)
}

func TestStartsWithoutEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	srv.Stop()
	s := openNoWait(t, srv.Endpoint(), "/s/")
	if s.Ready() {
		t.Fatal("Ready with etcd down")
	}
	if _, err := s.Login(context.Background(), store.Login{Provider: "p", Username: "u", At: t0}); !errors.Is(err, etcd.ErrUnavailable) {
		t.Errorf("Login before the users were loaded = %v, want an error wrapping %v", err, etcd.ErrUnavailable)
	}
	if _, err := s.List(context.Background(), "", 0, 0); !errors.Is(err, etcd.ErrUnavailable) {
		t.Errorf("List before the users were loaded = %v, want an error wrapping %v", err, etcd.ErrUnavailable)
	}

	srv.Restart(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if id := mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0}); !id.New || id.ID != 1 {
		t.Errorf("first Login = %+v, want the new user 1", id)
	}
}

func TestCloseBeforeEtcd(t *testing.T) {
	srv := etcdtest.Start(t)
	srv.Stop()
	s := openNoWait(t, srv.Endpoint(), "/c/")
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs while etcd was never reached")
	}
	if s.Ready() {
		t.Error("Ready after Close without etcd")
	}
}

// proxy forwards TCP connections to an etcd endpoint until it is cut,
// which closes every connection and refuses new ones: a network failure
// between one replica and etcd, while etcd and the other replicas go on.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func startProxy(t *testing.T, endpoint string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := endpoint[len("http://"):]
	p := &proxy{l: l, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		l.Close()
		p.cut()
	})
	return p
}

func (p *proxy) addr() string { return p.l.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) forward(c net.Conn) {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.mu.Unlock()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go func() { io.Copy(up, c); up.Close() }()
	io.Copy(c, up)
	c.Close()
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

func BenchmarkLogin(b *testing.B) {
	srv := etcdtest.Start(b)
	s, err := etcd.Open(etcd.Options{Endpoints: []string{srv.Endpoint()}, Prefix: "/bench/"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if err := s.WaitReady(context.Background()); err != nil {
		b.Fatal(err)
	}
	storetest.Benchmark(b, s)
}
