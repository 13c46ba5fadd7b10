package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/signing"
	"github.com/jwtauthz/jwtauthz/internal/testlog"
	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

// child is `jwtauthz serve` running as a real process: this test binary,
// whose TestMain runs main when JWTAUTHZ_TEST_MAIN=1.
type child struct {
	cmd      *exec.Cmd
	logs     *testlog.Buffer
	grpcAddr string
	httpAddr string
	waited   chan struct{}
	waitErr  error
}

// startChild runs `serve --config cfgPath` plus args with extra environment
// variables, and waits until it listens (not until it is SERVING).
func startChild(t testing.TB, cfgPath string, env []string, args ...string) *child {
	t.Helper()
	c := spawnChild(t, cfgPath, env, args...)
	tt, ok := t.(*testing.T)
	if !ok {
		t.Fatal("startChild needs a *testing.T")
	}
	c.grpcAddr, c.httpAddr = listening(tt, c.logs)
	return c
}

// spawnChild is startChild without the wait: serve may still be starting.
func spawnChild(t testing.TB, cfgPath string, env []string, args ...string) *child {
	t.Helper()
	c := &child{logs: &testlog.Buffer{}, waited: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], append([]string{"serve", "--config", cfgPath, "--log-format", "json"}, args...)...)
	c.cmd.Env = append(append(os.Environ(), "JWTAUTHZ_TEST_MAIN=1"), env...)
	c.cmd.Stderr = c.logs
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.waitErr = c.cmd.Wait()
		close(c.waited)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		<-c.waited
	})
	return c
}

// wait waits for the process to exit and returns its exit status.
func (c *child) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.waited:
	case <-time.After(timeout):
		t.Fatalf("serve did not exit within %v; logs:\n%s", timeout, c.logs.String())
	}
	if c.waitErr == nil {
		return 0
	}
	if ee, ok := c.waitErr.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", c.waitErr)
	return -1
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (c *child) kill9(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.waited
}

// checkClient sends Envoy-shaped Checks over one connection.
type checkClient struct {
	conn *grpc.ClientConn
	c    authv3.AuthorizationClient
}

func dialCheck(t testing.TB, addr string) *checkClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &checkClient{conn: conn, c: authv3.NewAuthorizationClient(conn)}
}

// answer is a Check's outcome as a test needs it.
type answer struct {
	allow   bool
	userID  string // x-auth-user-id of an allow
	newUser bool   // dynamic_metadata.new_user of an allow
	reason  string // the JSON body's error of a deny
	code    codes.Code
	http    int
	retry   string // retry-after of a deny
}

func (cc *checkClient) check(ctx context.Context, tok string) (answer, error) {
	return cc.checkAt(ctx, tok, "/api")
}

// checkAt is check for a request to path.
func (cc *checkClient) checkAt(ctx context.Context, tok, path string) (answer, error) {
	headers := map[string]string{":method": "GET", ":path": path, ":authority": "example.com", ":scheme": "http"}
	if tok != "" {
		headers["authorization"] = "Bearer " + tok
	}
	resp, err := cc.c.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: path, Host: "example.com", Scheme: "http", Protocol: "HTTP/1.1", Headers: headers,
		}},
	}})
	if err != nil {
		return answer{}, err
	}
	a := answer{code: codes.Code(resp.GetStatus().GetCode())}
	if ok := resp.GetOkResponse(); ok != nil && a.code == codes.OK {
		a.allow = true
		for _, h := range ok.GetHeaders() {
			if h.GetHeader().GetKey() == "x-auth-user-id" {
				a.userID = h.GetHeader().GetValue()
			}
		}
		a.newUser = resp.GetDynamicMetadata().GetFields()["new_user"].GetBoolValue()
		return a, nil
	}
	d := resp.GetDeniedResponse()
	a.http = int(d.GetStatus().GetCode())
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == "retry-after" {
			a.retry = h.GetHeader().GetValue()
		}
	}
	var body struct{ Error string }
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		return a, fmt.Errorf("deny body %q: %w", d.GetBody(), err)
	}
	a.reason = body.Error
	return a, nil
}

// storedUsers opens a bbolt file read-only, as no jwtauthz code does, runs
// bbolt's consistency check, and returns the users by username. It fails
// the test if the file is inconsistent: a page error, a user without its id
// entry or the other way round, or an id given twice.
func storedUsers(t testing.TB, path string) map[string]*adminv1.User {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("open %s read-only: %v", path, err)
	}
	defer db.Close()
	users := map[string]*adminv1.User{}
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt check: %w", err)
		}
		ub, ib := tx.Bucket([]byte("users")), tx.Bucket([]byte("ids"))
		if ub == nil || ib == nil {
			return fmt.Errorf("buckets users/ids missing")
		}
		byKey := map[string]uint64{}
		if err := ub.ForEach(func(k, v []byte) error {
			rec := new(adminv1.User)
			if err := proto.Unmarshal(v, rec); err != nil {
				return fmt.Errorf("user %x: %w", k, err)
			}
			if _, dup := users[rec.GetUsername()]; dup {
				return fmt.Errorf("user %q stored twice", rec.GetUsername())
			}
			users[rec.GetUsername()] = rec
			byKey[string(k)] = rec.GetId()
			return nil
		}); err != nil {
			return err
		}
		ids := 0
		if err := ib.ForEach(func(k, v []byte) error {
			ids++
			id, ok := byKey[string(v)]
			if !ok {
				return fmt.Errorf("id entry %x names no stored user", k)
			}
			if len(k) != 8 || id != binary.BigEndian.Uint64(k) {
				return fmt.Errorf("id entry %x points at the user with id %d", k, id)
			}
			return nil
		}); err != nil {
			return err
		}
		if ids != len(byKey) {
			return fmt.Errorf("%d id entries for %d users: an id was given twice or a user has none", ids, len(byKey))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("store %s: %v", path, err)
	}
	return users
}

// crashReps is how many kill -9 rounds TestCrashKill9 runs;
// JWTAUTHZ_CRASH_REPS raises it for a longer run by hand.
func crashReps(t *testing.T) int {
	if v := os.Getenv("JWTAUTHZ_CRASH_REPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("JWTAUTHZ_CRASH_REPS=%q: want a positive number", v)
		}
		return n
	}
	if testing.Short() {
		return 3 // the README's quick run; .ci/run runs all 20
	}
	return 20
}

// TestCrashKill9 runs serve as a child process, creates users at full speed
// from many clients, kills it with SIGKILL at a random moment, and checks on
// the file it leaves that every user whose allow came back is there exactly
// once, with the id it was given, and that the file is consistent. The next
// round restarts serve on the same file, which must come up and still know
// the users of the round before.
func TestCrashKill9(t *testing.T) {
	s := servetest.New(t)
	reps := crashReps(t)
	const clients, conns = 16, 4
	type ack struct{ id string }
	acked := map[string]ack{} // every allowed user of every round
	var prev []string         // users allowed in the previous round
	total := 0
	for rep := range reps {
		c := startChild(t, s.ConfigPath, nil, "--drain", "0")
		waitHealth(t, c.grpcAddr, healthpb.HealthCheckResponse_SERVING)
		ccs := make([]*checkClient, conns)
		for i := range ccs {
			ccs[i] = dialCheck(t, c.grpcAddr)
		}
		// The restarted service still knows the last round's users.
		for i, name := range prev {
			if i == 20 {
				break
			}
			a, err := ccs[0].check(context.Background(), s.Mint(t, name, time.Hour))
			if err != nil || !a.allow || a.newUser || a.userID != acked[name].id {
				t.Fatalf("round %d: user %s of the round before after restart: %+v, %v; want an allow of id %s, not new",
					rep, name, a, err, acked[name].id)
			}
		}

		ctx, stop := context.WithCancel(context.Background())
		var mu sync.Mutex
		var round []string
		var wg sync.WaitGroup
		for cl := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cc := ccs[cl%conns]
				for seq := 0; ctx.Err() == nil; seq++ {
					name := fmt.Sprintf("r%03d-c%02d-%06d", rep, cl, seq)
					tok, err := signing.Mint(s.Key, name, signing.Options{TTL: time.Hour, Now: time.Now()})
					if err != nil {
						t.Error(err)
						return
					}
					rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					a, err := cc.check(rctx, tok)
					cancel()
					if err != nil {
						return // the process is gone
					}
					if !a.allow || !a.newUser {
						t.Errorf("round %d: first Check of %s: %+v, want an allow of a new user", rep, name, a)
						return
					}
					mu.Lock()
					acked[name] = ack{id: a.userID}
					round = append(round, name)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(100+rand.IntN(600)) * time.Millisecond) // the random moment
		c.kill9(t)
		stop()
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}

		users := storedUsers(t, s.DBPath)
		ids := map[uint64]string{}
		for name, u := range users {
			if other, dup := ids[u.GetId()]; dup {
				t.Fatalf("round %d: id %d held by %s and %s", rep, u.GetId(), other, name)
			}
			ids[u.GetId()] = name
		}
		for name, a := range acked {
			u, ok := users[name]
			if !ok {
				t.Fatalf("round %d: user %s was allowed (id %s) but is not in the file after kill -9", rep, name, a.id)
			}
			if strconv.FormatUint(u.GetId(), 10) != a.id {
				t.Fatalf("round %d: user %s was allowed with id %s, the file has id %d", rep, name, a.id, u.GetId())
			}
		}
		t.Logf("round %d: %d users allowed before kill -9, %d in the file (in-flight ones may be there too)", rep, len(round), len(users))
		total += len(round)
		prev = round
	}
	if total == 0 {
		t.Fatal("no user was allowed in any round: the kill came before any load")
	}
	t.Logf("%d rounds, %d users allowed and all found after kill -9", reps, total)
}
