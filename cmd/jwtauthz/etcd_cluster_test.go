package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/jwtauthz/jwtauthz/internal/extauthz"
	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/signing"
	"github.com/jwtauthz/jwtauthz/internal/testlog"
	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store/etcd/etcdtest"
)

// etcdCluster is several jwtauthz services sharing one embedded etcd, as
// replicas of one Deployment share an etcd cluster.
type etcdCluster struct {
	etcd   *etcdtest.Server
	env    *servetest.Env
	prefix string

	mu     sync.Mutex
	tokens map[string]string // by username
}

func newEtcdCluster(t *testing.T) *etcdCluster {
	t.Helper()
	return &etcdCluster{etcd: etcdtest.Start(t), env: servetest.New(t), prefix: "/cluster/", tokens: map[string]string{}}
}

// start starts one jwtauthz service of the cluster, with the admin API on,
// and shuts it down when the test ends. It does not wait for SERVING.
func (c *etcdCluster) start(t *testing.T) *service {
	t.Helper()
	c.env.WriteConfig(t, fmt.Sprintf(`listen: 127.0.0.1:0
http_listen: ""
admin:
  listen: 127.0.0.1:0
  require_claims: {roles: admin}
store:
  backend: etcd
  etcd:
    endpoints: [%s]
    prefix: %s
    dial_timeout: 2s
providers:
  - algorithms: [ES256]
    pem_files: [%s]
`, c.etcd.Endpoint(), c.prefix, c.env.PublicPEM))
	return startEnv(t, c.env, serviceOptions{})
}

// startServing starts n services and waits until each is SERVING.
func (c *etcdCluster) startServing(t *testing.T, n int) []*service {
	t.Helper()
	svcs := make([]*service, n)
	for i := range svcs {
		svcs[i] = c.start(t)
	}
	for _, s := range svcs {
		waitHealth(t, s.grpcAddr.String(), healthpb.HealthCheckResponse_SERVING)
	}
	return svcs
}

func (c *etcdCluster) token(t *testing.T, user string, claims map[string]any) string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok, ok := c.tokens[user]; ok {
		return tok
	}
	tok, err := signing.Mint(c.env.Key, user, signing.Options{TTL: time.Hour, Now: time.Now(), Claims: claims})
	if err != nil {
		t.Error(err)
		return ""
	}
	c.tokens[user] = tok
	return tok
}

// checker sends Checks to one service over one connection, as Envoy does.
type checker struct {
	cli authv3.AuthorizationClient
	c   *etcdCluster
}

func (c *etcdCluster) checker(t *testing.T, svc *service) *checker {
	t.Helper()
	conn, err := grpc.NewClient(svc.grpcAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &checker{cli: authv3.NewAuthorizationClient(conn), c: c}
}

// checkResult is what a test needs of a CheckResponse.
type checkResult struct {
	code    codes.Code // CheckResponse.status
	http    int        // the denied response's HTTP status; 200 when allowed
	reason  string     // the denied body's "error"
	newUser bool       // dynamic metadata new_user
}

// check sends one Check of user's token. A gRPC error fails the test: a
// decision is always a CheckResponse.
func (k *checker) check(t *testing.T, user string) checkResult {
	t.Helper()
	req, err := extauthz.New(extauthz.Request{Addr: "jwtauthz", Token: k.c.token(t, user, nil)})
	if err != nil {
		t.Error(err)
		return checkResult{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := k.cli.Check(ctx, req)
	if err != nil {
		t.Errorf("Check of %q: gRPC error %v, want a CheckResponse", user, err)
		return checkResult{code: codes.Unknown}
	}
	r := checkResult{
		code:    codes.Code(resp.GetStatus().GetCode()),
		http:    200,
		newUser: resp.GetDynamicMetadata().GetFields()["new_user"].GetBoolValue(),
	}
	if d := resp.GetDeniedResponse(); d != nil {
		r.http = int(d.GetStatus().GetCode())
		var body struct{ Error string }
		if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
			t.Errorf("denied body %q: %v", d.GetBody(), err)
		}
		r.reason = body.Error
	}
	return r
}

// waitCheck polls Checks of user until want holds and returns how long
// after start that was; it fails the test after limit.
func (k *checker) waitCheck(t *testing.T, user string, start time.Time, limit time.Duration, want func(checkResult) bool) time.Duration {
	t.Helper()
	for {
		r := k.check(t, user)
		if want(r) {
			return time.Since(start)
		}
		if t.Failed() || time.Since(start) > limit {
			t.Fatalf("after %v, Check of %q = %+v; the change did not arrive", time.Since(start), user, r)
		}
		time.Sleep(2 * time.Millisecond) // a poll with a deadline
	}
}

func allowed(r checkResult) bool   { return r.code == codes.OK && r.http == 200 }
func forbidden(r checkResult) bool { return r.code == codes.PermissionDenied && r.http == 403 }

// admin returns a UserAdmin client of svc whose calls carry an admin token.
func (c *etcdCluster) admin(t *testing.T, svc *service) (adminv1.UserAdminClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(svc.adminAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tok := c.token(t, "operator", map[string]any{"roles": "admin"})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	return adminv1.NewUserAdminClient(conn), ctx
}

func countKeys(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func TestEtcdClusterFirstChecksMakeOneUser(t *testing.T) {
	const n = 200
	c := newEtcdCluster(t)
	svcs := c.startServing(t, 3)
	checkers := make([]*checker, len(svcs))
	for i, s := range svcs {
		checkers[i] = c.checker(t, s)
	}
	c.token(t, "racer", nil)

	results := make([]checkResult, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = checkers[i%len(checkers)].check(t, "racer")
		})
	}
	close(start)
	wg.Wait()

	news := 0
	for i, r := range results {
		if !allowed(r) {
			t.Errorf("Check %d = %+v, want allowed", i, r)
		}
		if r.newUser {
			news++
		}
	}
	if news != 1 {
		t.Errorf("%d Checks say new_user, want exactly 1", news)
	}
	cli := c.etcd.Client(t)
	if users, ids := countKeys(t, cli, c.prefix+"users/"), countKeys(t, cli, c.prefix+"ids/"); users != 1 || ids != 1 {
		t.Errorf("etcd holds %d user records and %d ids, want 1 and 1", users, ids)
	}

	// Once every service flushed, the one record counts every Check.
	for _, s := range svcs {
		if err := s.store.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	adm, ctx := c.admin(t, svcs[2])
	u, err := adm.GetUser(ctx, &adminv1.GetUserRequest{Provider: "default", Username: "racer"})
	if err != nil {
		t.Fatal(err)
	}
	if u.GetLoginCount() != n || u.GetId() != 1 {
		t.Errorf("user: id %d, login_count %d; want 1, %d", u.GetId(), u.GetLoginCount(), n)
	}
}

func TestEtcdClusterDeactivationAndPaging(t *testing.T) {
	c := newEtcdCluster(t)
	svcs := c.startServing(t, 3)
	checkers := make([]*checker, len(svcs))
	for i, s := range svcs {
		checkers[i] = c.checker(t, s)
	}

	// Users arrive through every service; mallory is known to all three.
	var names []string
	for i := range 10 {
		name := fmt.Sprintf("user%02d", i)
		names = append(names, name)
		if r := checkers[i%3].check(t, name); !allowed(r) || !r.newUser {
			t.Fatalf("first Check of %s = %+v, want allowed, new", name, r)
		}
	}
	for i, k := range checkers {
		if r := k.check(t, "mallory"); !allowed(r) {
			t.Fatalf("Check of mallory on service %d = %+v, want allowed", i, r)
		}
	}
	names = append(names, "mallory")

	t.Run("deactivation reaches every service", func(t *testing.T) {
		adm, ctx := c.admin(t, svcs[0])
		start := time.Now()
		if _, err := adm.SetUserActive(ctx, &adminv1.SetUserActiveRequest{Provider: "default", Username: "mallory", Active: false}); err != nil {
			t.Fatal(err)
		}
		if r := checkers[0].check(t, "mallory"); !forbidden(r) {
			t.Errorf("Check on the deactivating service = %+v, want 403 at once", r)
		}
		for i := 1; i < 3; i++ {
			d := checkers[i].waitCheck(t, "mallory", start, time.Second, forbidden)
			t.Logf("deactivation through service 0's admin API: service %d denies after %v", i, d)
		}
	})

	t.Run("paging shows every user once", func(t *testing.T) {
		adm, ctx := c.admin(t, svcs[1])
		var got []string
		var lastID uint64
		token := ""
		for {
			resp, err := adm.ListUsers(ctx, &adminv1.ListUsersRequest{PageSize: 3, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range resp.GetUsers() {
				if u.GetId() <= lastID {
					t.Errorf("id %d after %d: not in id order", u.GetId(), lastID)
				}
				lastID = u.GetId()
				got = append(got, u.GetUsername())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(names) {
			t.Errorf("users listed = %v, want %v", got, names)
		}
	})
}

func TestEtcdClusterEtcdDown(t *testing.T) {
	c := newEtcdCluster(t)
	svcs := c.startServing(t, 2)
	a, b := c.checker(t, svcs[0]), c.checker(t, svcs[1])
	for _, k := range []*checker{a, b} {
		if r := k.check(t, "known"); !allowed(r) {
			t.Fatalf("Check of known = %+v, want allowed", r)
		}
	}

	c.etcd.Stop()
	for i, k := range []*checker{a, b} {
		if r := k.check(t, "known"); !allowed(r) {
			t.Errorf("service %d with etcd down: Check of a known user = %+v, want allowed from memory", i, r)
		}
		// The client may need a moment to notice; then a new user is 503.
		k.waitCheck(t, "newcomer", time.Now(), 10*time.Second, func(r checkResult) bool {
			return r.code == codes.Unavailable && r.http == 503 && r.reason == "store_unavailable"
		})
		// Having reached etcd once, the service stays SERVING.
		if st := healthStatus(t, svcs[i].grpcAddr.String(), authzService); st != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("service %d health with etcd down = %v, want SERVING", i, st)
		}
	}

	c.etcd.Restart(t)
	// Without a restart of jwtauthz, new users are created again.
	a.waitCheck(t, "newcomer", time.Now(), 15*time.Second, allowed)
	b.waitCheck(t, "newcomer", time.Now(), 15*time.Second, allowed)
	cli := c.etcd.Client(t)
	if users := countKeys(t, cli, c.prefix+"users/"); users != 2 {
		t.Errorf("etcd holds %d users, want 2 (known, newcomer)", users)
	}
}

func TestEtcdServiceStartsWithoutEtcd(t *testing.T) {
	c := newEtcdCluster(t)
	c.etcd.Stop()
	svc := c.start(t) // does not fail: etcd is retried in the background
	addr := svc.grpcAddr.String()
	if st := healthStatus(t, addr, authzService); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health before etcd was reached = %v, want NOT_SERVING", st)
	}
	k := c.checker(t, svc)
	if r := k.check(t, "early"); r.code != codes.Unavailable || r.http != 503 || r.reason != "store_unavailable" {
		t.Errorf("Check before etcd was reached = %+v, want 503 store_unavailable", r)
	}

	c.etcd.Restart(t)
	waitHealth(t, addr, healthpb.HealthCheckResponse_SERVING)
	if r := k.check(t, "early"); !allowed(r) || !r.newUser {
		t.Errorf("Check once etcd is up = %+v, want allowed, new", r)
	}
}

// TestEtcdDownAtShutdown stops a replica while etcd is unreachable and
// logins wait to be written: the shutdown logs and counts what is lost and
// succeeds, rather than failing a pod that must go.
func TestEtcdDownAtShutdown(t *testing.T) {
	c := newEtcdCluster(t)
	var logs testlog.Buffer
	c.env.WriteConfig(t, fmt.Sprintf(`listen: 127.0.0.1:0
http_listen: ""
store:
  backend: etcd
  etcd: {endpoints: [%s], prefix: %s, dial_timeout: 1s}
providers:
  - algorithms: [ES256]
    pem_files: [%s]
`, c.etcd.Endpoint(), c.prefix, c.env.PublicPEM))
	svc, err := startService(context.Background(), c.env.Config(t), serviceOptions{logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	waitHealth(t, svc.grpcAddr.String(), healthpb.HealthCheckResponse_SERVING)
	k := c.checker(t, svc)
	for range 3 {
		if r := k.check(t, "known"); !allowed(r) {
			t.Fatalf("Check = %+v, want allowed", r)
		}
	}
	c.etcd.Stop()
	start := time.Now()
	if err := svc.shutdown(0); err != nil {
		t.Fatalf("shutdown with etcd down = %v, want nil (counts logged as lost)", err)
	}
	t.Logf("shutdown took %v", time.Since(start).Round(time.Millisecond))
	if got := testutil.ToFloat64(svc.unwritten); got != 2 {
		t.Errorf("jwtauthz_store_unwritten_logins_total = %v, want 2 (the two logins after the creating one)", got)
	}
	if !strings.Contains(logs.String(), `"msg":"store unreachable at shutdown: login counts not written","users":1,"logins":2`) {
		t.Errorf("log lacks the lost counts:\n%s", logs.String())
	}
}
