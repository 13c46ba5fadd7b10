package admin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jwtauthz/jwtauthz/admin"
	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/claims"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/internal/testlog"
	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
	"github.com/jwtauthz/jwtauthz/store/bolt"
)

// now is the injected clock of the verifiers and the Check server.
var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

const partnerIssuer = "https://partner.example"

// keySet is the signing keys of one test: the two configured providers'
// and a stranger's that no provider trusts.
type keySet struct {
	dflt, partner, stranger *ecdsa.PrivateKey
}

func newKeys(t testing.TB) *keySet {
	t.Helper()
	gen := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	return &keySet{dflt: gen(), partner: gen(), stranger: gen()}
}

// router builds the verifier the Check path and the admin API share: the
// provider "default" (no issuer) and "partner" (its own issuer and key).
func (ks *keySet) router(t testing.TB) *token.Router {
	t.Helper()
	schema, err := claims.Compile("")
	if err != nil {
		t.Fatal(err)
	}
	static := func(k *ecdsa.PrivateKey) *keys.Static {
		return keys.NewStatic(keys.NewSet([]keys.Key{{Public: &k.PublicKey}}, 1))
	}
	clock := func() time.Time { return now }
	r, err := token.NewRouter([]*token.Verifier{
		token.NewVerifier(token.Options{Provider: "default", Algorithms: []string{"ES256"}, Keys: static(ks.dflt), Schema: schema, Now: clock}),
		token.NewVerifier(token.Options{Provider: "partner", Issuer: partnerIssuer, Algorithms: []string{"ES256"}, Keys: static(ks.partner), Schema: schema, Now: clock}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mint signs claims with key.
func mint(t testing.TB, key *ecdsa.PrivateKey, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodES256, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// userClaims are valid claims for username as of now; extra entries are
// added or replace the defaults.
func userClaims(username string, extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{
		"username": username,
		"sub":      "sub-" + username,
		"iat":      now.Unix(),
		"exp":      now.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// fixture is a running admin API and Check server over one bbolt store,
// both on one bufconn gRPC server.
type fixture struct {
	keys       *keySet
	db         *store.Engine
	path       string
	admin      adminv1.UserAdminClient
	check      authv3.AuthorizationClient
	adminToken string // of "root", holding the required claim
	logs       *testlog.Buffer
	stop       func()
}

type fixtureOptions struct {
	keys          *keySet        // default: fresh keys
	path          string         // default: a new file in t.TempDir()
	requireClaims map[string]any // default: {roles: admin}
}

func start(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	if o.keys == nil {
		o.keys = newKeys(t)
	}
	if o.path == "" {
		o.path = filepath.Join(t.TempDir(), "users.db")
	}
	if o.requireClaims == nil {
		o.requireClaims = map[string]any{"roles": "admin"}
	}
	db, err := bolt.Open(bolt.Options{Path: o.path})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	router := o.keys.router(t)
	as, err := admin.New(admin.Options{Users: db, Policy: admin.Policy{Verifier: router, RequireClaims: o.requireClaims}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	adminv1.RegisterUserAdminServer(gs, as)
	authv3.RegisterAuthorizationServer(gs, authz.New(authz.Options{Users: db, Now: func() time.Time { return now }}, &authz.Policy{
		Verifier: router,
		Headers:  authz.IdentityHeaders{User: "x-auth-user", UserID: "x-auth-user-id", Provider: "x-auth-provider", StripPrefix: "x-auth-"},
	}))
	lis := bufconn.Listen(1 << 20)
	go gs.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			conn.Close()
			gs.Stop()
			if err := db.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &fixture{
		keys:       o.keys,
		db:         db,
		path:       o.path,
		admin:      adminv1.NewUserAdminClient(conn),
		check:      authv3.NewAuthorizationClient(conn),
		adminToken: mint(t, o.keys.dflt, userClaims("root", jwt.MapClaims{"roles": []any{"dev", "admin"}})),
		logs:       logs,
		stop:       stop,
	}
}

// as returns a context that calls with tok as the bearer token.
func as(t testing.TB, tok string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// login creates or updates a user as a Check would, straight in the store.
func (f *fixture) login(t testing.TB, provider, username string) store.Identity {
	t.Helper()
	id, err := f.db.Login(context.Background(), store.Login{Provider: provider, Username: username, Subject: "sub-" + username, At: now})
	if err != nil {
		t.Fatalf("Login(%q, %q): %v", provider, username, err)
	}
	return id
}

// loginMany creates n users of provider named prefix0..prefix(n-1),
// concurrently so that the store's batches carry many of them.
func (f *fixture) loginMany(t testing.TB, provider, prefix string, n int) {
	t.Helper()
	const workers = 64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				_, err := f.db.Login(context.Background(), store.Login{Provider: provider, Username: fmt.Sprintf("%s%d", prefix, i), At: now})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Login: %v", err)
	}
}

// checkUser sends a Check with a valid token of the default provider for
// username and returns the response.
func (f *fixture) checkUser(t testing.TB, username string) *authv3.CheckResponse {
	t.Helper()
	tok := mint(t, f.keys.dflt, userClaims(username, nil))
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req", Method: "GET", Path: "/api", Host: "example.com",
			Headers: map[string]string{":method": "GET", ":path": "/api", "authorization": "Bearer " + tok},
		}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.check.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// wantAllowed fails unless resp allows.
func wantAllowed(t testing.TB, resp *authv3.CheckResponse) {
	t.Helper()
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.OK {
		t.Fatalf("Check status = %v (%s), want OK", got, resp.GetStatus().GetMessage())
	}
}

// wantInactive fails unless resp denies as user_inactive: PERMISSION_DENIED,
// HTTP 403 and a JSON body naming the reason.
func wantInactive(t testing.TB, resp *authv3.CheckResponse) {
	t.Helper()
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.PermissionDenied {
		t.Fatalf("Check status = %v (%s), want PermissionDenied", got, resp.GetStatus().GetMessage())
	}
	d := resp.GetDeniedResponse()
	if got := d.GetStatus().GetCode(); got != 403 {
		t.Errorf("denied HTTP status = %d, want 403", got)
	}
	var body struct{ Error string }
	if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
		t.Fatalf("denied body %q: %v", d.GetBody(), err)
	}
	if body.Error != "user_inactive" {
		t.Errorf("denied body error = %q, want %q", body.Error, "user_inactive")
	}
}

// wantCode fails unless err is a gRPC status with code want.
func wantCode(t testing.TB, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("error = %v, want code %v", err, want)
	}
}

// listAll pages through ListUsers with req's filter and page size.
func listAll(t testing.TB, ctx context.Context, c adminv1.UserAdminClient, req *adminv1.ListUsersRequest) (users []*adminv1.User, pages int) {
	t.Helper()
	for {
		resp, err := c.ListUsers(ctx, req)
		if err != nil {
			t.Fatalf("ListUsers(page %d): %v", pages+1, err)
		}
		pages++
		users = append(users, resp.GetUsers()...)
		if resp.GetNextPageToken() == "" {
			return users, pages
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestListPagesWhileUsersAreCreated(t *testing.T) {
	f := start(t, fixtureOptions{})
	const initial = 2500
	f.loginMany(t, "default", "user", initial)

	// The creator adds a user, then waits until the lister takes note
	// before adding the next, so that every page after the first is asked
	// for while a creation is in flight and at least one more user exists.
	created := make(chan uint64)
	stop := make(chan struct{})
	creatorDone := make(chan error, 1)
	go func() {
		defer close(creatorDone)
		for i := 0; ; i++ {
			id, err := f.db.Login(context.Background(), store.Login{Provider: "default", Username: fmt.Sprintf("late%d", i), At: now})
			if err != nil {
				creatorDone <- err
				return
			}
			select {
			case created <- id.ID:
			case <-stop:
				return
			}
		}
	}()

	ctx := as(t, f.adminToken)
	req := &adminv1.ListUsersRequest{PageSize: 100}
	var listed []*adminv1.User
	var pages int
	var maxCreated uint64
	for {
		resp, err := f.admin.ListUsers(ctx, req)
		if err != nil {
			t.Fatalf("ListUsers(page %d): %v", pages+1, err)
		}
		pages++
		if n := len(resp.GetUsers()); n > 100 {
			t.Fatalf("page %d has %d users, over page_size 100", pages, n)
		}
		listed = append(listed, resp.GetUsers()...)
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
		maxCreated = <-created
	}
	close(stop)
	if err := <-creatorDone; err != nil {
		t.Fatalf("creator: %v", err)
	}

	// No gap, no duplicate, in id order: the listed ids are exactly 1..N.
	for i, u := range listed {
		if want := uint64(i + 1); u.GetId() != want {
			t.Fatalf("listed user %d has id %d, want %d (a gap, a duplicate or disorder)", i, u.GetId(), want)
		}
	}
	if len(listed) <= initial {
		t.Fatalf("listed %d users, want more than the %d created before listing", len(listed), initial)
	}
	if last := listed[len(listed)-1].GetId(); last < maxCreated {
		t.Errorf("last listed id %d, want at least %d (created before the last page was asked for)", last, maxCreated)
	}
	if pages < initial/100 {
		t.Errorf("%d pages, want at least %d", pages, initial/100)
	}

	// What was listed is what the store holds, record for record.
	all, err := f.db.List(context.Background(), "", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all[:len(listed)], listed, protocmp.Transform()); diff != "" {
		t.Errorf("listed users differ from the store's (-store +listed):\n%s", diff)
	}
	seen := map[string]bool{}
	for _, u := range listed {
		seen[u.GetUsername()] = true
	}
	for i := range initial {
		if name := fmt.Sprintf("user%d", i); !seen[name] {
			t.Fatalf("user %q created before listing was not listed", name)
		}
	}
}

func TestListPageSize(t *testing.T) {
	f := start(t, fixtureOptions{})
	const n = 1200
	f.loginMany(t, "default", "u", n)
	ctx := as(t, f.adminToken)
	tests := []struct {
		name     string
		pageSize int32
		wantLen  int
		wantNext bool
	}{
		{"zero is the default 100", 0, admin.DefaultPageSize, true},
		{"one", 1, 1, true},
		{"exactly the maximum", admin.MaxPageSize, admin.MaxPageSize, true},
		{"over the maximum is clamped", 5000, admin.MaxPageSize, true},
		{"int32 max is clamped", 1<<31 - 1, admin.MaxPageSize, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.admin.ListUsers(ctx, &adminv1.ListUsersRequest{PageSize: tt.pageSize})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(resp.GetUsers()); got != tt.wantLen {
				t.Errorf("got %d users, want %d", got, tt.wantLen)
			}
			if got := resp.GetNextPageToken() != ""; got != tt.wantNext {
				t.Errorf("next_page_token present = %v, want %v", got, tt.wantNext)
			}
		})
	}
	t.Run("negative is refused", func(t *testing.T) {
		_, err := f.admin.ListUsers(ctx, &adminv1.ListUsersRequest{PageSize: -1})
		wantCode(t, err, codes.InvalidArgument)
	})
	t.Run("clamped pages still reach every user", func(t *testing.T) {
		users, pages := listAll(t, ctx, f.admin, &adminv1.ListUsersRequest{PageSize: 5000})
		if len(users) != n || pages != 2 {
			t.Errorf("got %d users in %d pages, want %d in 2", len(users), pages, n)
		}
	})
}

func TestListLastPageHasNoToken(t *testing.T) {
	f := start(t, fixtureOptions{})
	for _, name := range []string{"a", "b", "c", "d"} {
		f.login(t, "default", name)
	}
	ctx := as(t, f.adminToken)
	// 4 users in pages of 2: the second page is the last, though full.
	users, pages := listAll(t, ctx, f.admin, &adminv1.ListUsersRequest{PageSize: 2})
	if len(users) != 4 || pages != 2 {
		t.Errorf("got %d users in %d pages, want 4 in 2", len(users), pages)
	}
	resp, err := f.admin.ListUsers(ctx, &adminv1.ListUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetUsers()) != 4 || resp.GetNextPageToken() != "" {
		t.Errorf("one page: got %d users and next_page_token %q, want 4 and none", len(resp.GetUsers()), resp.GetNextPageToken())
	}
}

func TestListBadPageToken(t *testing.T) {
	f := start(t, fixtureOptions{})
	for i := range 5 {
		f.login(t, "default", fmt.Sprintf("d%d", i))
		f.login(t, "partner", fmt.Sprintf("p%d", i))
	}
	ctx := as(t, f.adminToken)
	first := func(provider string) string {
		resp, err := f.admin.ListUsers(ctx, &adminv1.ListUsersRequest{PageSize: 1, Provider: provider})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetNextPageToken() == "" {
			t.Fatal("no next_page_token after the first page of 1")
		}
		return resp.GetNextPageToken()
	}
	allTok, partnerTok := first(""), first("partner")
	tests := []struct {
		name, token, provider string
	}{
		{"not base64", "not a token!", ""},
		{"empty after decoding", base64.RawURLEncoding.EncodeToString(nil) + "A", ""},
		{"unknown version", base64.RawURLEncoding.EncodeToString([]byte{9, 1}), ""},
		{"truncated id", base64.RawURLEncoding.EncodeToString([]byte{1, 0x80}), ""},
		{"unfiltered token with a provider filter", allTok, "partner"},
		{"filtered token without the filter", partnerTok, ""},
		{"filtered token with another filter", partnerTok, "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.admin.ListUsers(ctx, &adminv1.ListUsersRequest{PageToken: tt.token, Provider: tt.provider})
			wantCode(t, err, codes.InvalidArgument)
		})
	}
	t.Run("a token continues its own listing", func(t *testing.T) {
		for _, c := range []struct{ token, provider string }{{allTok, ""}, {partnerTok, "partner"}} {
			if _, err := f.admin.ListUsers(ctx, &adminv1.ListUsersRequest{PageToken: c.token, Provider: c.provider}); err != nil {
				t.Errorf("ListUsers(provider %q): %v", c.provider, err)
			}
		}
	})
}

func TestListProviderFilter(t *testing.T) {
	f := start(t, fixtureOptions{})
	var wantPartner, wantAll []string
	for i := range 7 {
		d, p := fmt.Sprintf("d%d", i), fmt.Sprintf("p%d", i)
		f.login(t, "default", d)
		f.login(t, "partner", p)
		wantAll = append(wantAll, "default/"+d, "partner/"+p)
		wantPartner = append(wantPartner, "partner/"+p)
	}
	ctx := as(t, f.adminToken)
	keys := func(us []*adminv1.User) []string {
		var out []string
		for i, u := range us {
			if i > 0 && u.GetId() <= us[i-1].GetId() {
				t.Errorf("ids out of order: %d after %d", u.GetId(), us[i-1].GetId())
			}
			out = append(out, u.GetProvider()+"/"+u.GetUsername())
		}
		return out
	}
	tests := []struct {
		provider string
		want     []string
	}{
		{"partner", wantPartner},
		{"", wantAll},
		{"nobody", nil},
	}
	for _, tt := range tests {
		t.Run("provider="+tt.provider, func(t *testing.T) {
			users, _ := listAll(t, ctx, f.admin, &adminv1.ListUsersRequest{PageSize: 3, Provider: tt.provider})
			if diff := cmp.Diff(tt.want, keys(users)); diff != "" {
				t.Errorf("listed users (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGetUser(t *testing.T) {
	f := start(t, fixtureOptions{})
	wantAllowed(t, f.checkUser(t, "alice"))
	f.login(t, "partner", "alice")
	ctx := as(t, f.adminToken)

	got, err := f.admin.GetUser(ctx, &adminv1.GetUserRequest{Provider: "default", Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	want := &adminv1.User{
		Id: 1, Provider: "default", Username: "alice", Subject: "sub-alice",
		CreatedAt: timestamppb.New(now), LastLogin: timestamppb.New(now), LoginCount: 1, Active: true,
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetUser (-want +got):\n%s", diff)
	}

	tests := []struct {
		name               string
		provider, username string
		want               codes.Code
	}{
		{"unknown user", "default", "bob", codes.NotFound},
		{"known name, unknown provider", "nobody", "alice", codes.NotFound},
		{"no provider", "", "alice", codes.InvalidArgument},
		{"no username", "default", "", codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.admin.GetUser(ctx, &adminv1.GetUserRequest{Provider: tt.provider, Username: tt.username})
			wantCode(t, err, tt.want)
		})
	}
	t.Run("same name of another provider is another user", func(t *testing.T) {
		u, err := f.admin.GetUser(ctx, &adminv1.GetUserRequest{Provider: "partner", Username: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if u.GetId() != 2 || u.GetProvider() != "partner" {
			t.Errorf("got id %d provider %q, want 2 and partner", u.GetId(), u.GetProvider())
		}
	})
	t.Run("set active of an unknown user", func(t *testing.T) {
		_, err := f.admin.SetUserActive(ctx, &adminv1.SetUserActiveRequest{Provider: "default", Username: "bob"})
		wantCode(t, err, codes.NotFound)
		_, err = f.admin.SetUserActive(ctx, &adminv1.SetUserActiveRequest{Provider: "default"})
		wantCode(t, err, codes.InvalidArgument)
	})
}

// TestDeactivateTakesEffectOnNextCheck shows the ordering: once
// SetUserActive returns, the very next Check sees the new state. No sleep:
// the Check is sent after the call returns, and must already see it.
func TestDeactivateTakesEffectOnNextCheck(t *testing.T) {
	f := start(t, fixtureOptions{})
	ctx := as(t, f.adminToken)
	wantAllowed(t, f.checkUser(t, "alice")) // creates alice; later checks are served from memory
	wantAllowed(t, f.checkUser(t, "alice"))

	for round := range 5 {
		u, err := f.admin.SetUserActive(ctx, &adminv1.SetUserActiveRequest{Provider: "default", Username: "alice", Active: false})
		if err != nil {
			t.Fatalf("round %d: deactivate: %v", round, err)
		}
		if u.GetActive() || u.GetUsername() != "alice" {
			t.Fatalf("round %d: deactivate returned %v, want alice inactive", round, u)
		}
		wantInactive(t, f.checkUser(t, "alice"))
		got, err := f.admin.GetUser(ctx, &adminv1.GetUserRequest{Provider: "default", Username: "alice"})
		if err != nil || got.GetActive() {
			t.Fatalf("round %d: GetUser after deactivate = %v, %v; want inactive", round, got, err)
		}

		u, err = f.admin.SetUserActive(ctx, &adminv1.SetUserActiveRequest{Provider: "default", Username: "alice", Active: true})
		if err != nil {
			t.Fatalf("round %d: activate: %v", round, err)
		}
		if !u.GetActive() {
			t.Fatalf("round %d: activate returned an inactive user", round)
		}
		wantAllowed(t, f.checkUser(t, "alice"))
	}
	// Deactivating one user leaves the others alone.
	if _, err := f.admin.SetUserActive(ctx, &adminv1.SetUserActiveRequest{Provider: "default", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	wantAllowed(t, f.checkUser(t, "bob"))
	wantInactive(t, f.checkUser(t, "alice"))
}

func TestDeactivatedSurvivesRestart(t *testing.T) {
	ks := newKeys(t)
	path := filepath.Join(t.TempDir(), "users.db")
	f := start(t, fixtureOptions{keys: ks, path: path})
	wantAllowed(t, f.checkUser(t, "alice"))
	if _, err := f.admin.SetUserActive(as(t, f.adminToken), &adminv1.SetUserActiveRequest{Provider: "default", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	f.stop() // closes the store

	f = start(t, fixtureOptions{keys: ks, path: path})
	wantInactive(t, f.checkUser(t, "alice"))
	ctx := as(t, f.adminToken)
	u, err := f.admin.GetUser(ctx, &adminv1.GetUserRequest{Provider: "default", Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if u.GetActive() {
		t.Error("alice is active after a restart, want still deactivated")
	}
	if _, err := f.admin.SetUserActive(ctx, &adminv1.SetUserActiveRequest{Provider: "default", Username: "alice", Active: true}); err != nil {
		t.Fatal(err)
	}
	wantAllowed(t, f.checkUser(t, "alice"))
}

// TestCallersRefused sends every method with each kind of bad credential.
func TestCallersRefused(t *testing.T) {
	f := start(t, fixtureOptions{})
	wantAllowed(t, f.checkUser(t, "alice"))
	ks := f.keys

	// A deactivated operator: holds the claim, but was locked out.
	exOp := mint(t, ks.dflt, userClaims("ex-operator", jwt.MapClaims{"roles": []any{"admin"}}))
	f.login(t, "default", "ex-operator")
	if _, err := f.db.SetActive(context.Background(), "default", "ex-operator", false); err != nil {
		t.Fatal(err)
	}

	adminRole := jwt.MapClaims{"roles": []any{"admin"}}
	tests := []struct {
		name string
		md   []string // the authorization metadata values
		want codes.Code
	}{
		{"no token", nil, codes.Unauthenticated},
		{"empty bearer", []string{"Bearer "}, codes.Unauthenticated},
		{"basic scheme", []string{"Basic YWxpY2U6c2VjcmV0"}, codes.Unauthenticated},
		{"two tokens", []string{"Bearer " + f.adminToken, "Bearer " + f.adminToken}, codes.Unauthenticated},
		{"not a JWT", []string{"Bearer not-a-jwt"}, codes.Unauthenticated},
		{"key of no provider", []string{"Bearer " + mint(t, ks.stranger, userClaims("root", adminRole))}, codes.Unauthenticated},
		{"unknown issuer", []string{"Bearer " + mint(t, ks.stranger, userClaims("root", jwt.MapClaims{"iss": "https://evil.example", "roles": []any{"admin"}}))}, codes.Unauthenticated},
		{"partner issuer, default's key", []string{"Bearer " + mint(t, ks.dflt, userClaims("root", jwt.MapClaims{"iss": partnerIssuer, "roles": []any{"admin"}}))}, codes.Unauthenticated},
		{"expired", []string{"Bearer " + mint(t, ks.dflt, userClaims("root", jwt.MapClaims{"exp": now.Add(-time.Hour).Unix(), "iat": now.Add(-2 * time.Hour).Unix(), "roles": []any{"admin"}}))}, codes.Unauthenticated},
		{"no username (schema)", []string{"Bearer " + mint(t, ks.dflt, jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "roles": []any{"admin"}})}, codes.Unauthenticated},
		{"valid, without the claim", []string{"Bearer " + mint(t, ks.dflt, userClaims("alice", nil))}, codes.PermissionDenied},
		{"valid, other roles", []string{"Bearer " + mint(t, ks.dflt, userClaims("alice", jwt.MapClaims{"roles": []any{"dev", "ops"}}))}, codes.PermissionDenied},
		{"valid, claim of another type", []string{"Bearer " + mint(t, ks.dflt, userClaims("alice", jwt.MapClaims{"roles": map[string]any{"admin": true}}))}, codes.PermissionDenied},
		{"valid partner token, without the claim", []string{"Bearer " + mint(t, ks.partner, userClaims("pat", jwt.MapClaims{"iss": partnerIssuer}))}, codes.PermissionDenied},
		{"deactivated operator", []string{"Bearer " + exOp}, codes.PermissionDenied},
	}
	calls := map[string]func(ctx context.Context) error{
		"ListUsers": func(ctx context.Context) error {
			_, err := f.admin.ListUsers(ctx, &adminv1.ListUsersRequest{})
			return err
		},
		"GetUser": func(ctx context.Context) error {
			_, err := f.admin.GetUser(ctx, &adminv1.GetUserRequest{Provider: "default", Username: "alice"})
			return err
		},
		"SetUserActive": func(ctx context.Context) error {
			_, err := f.admin.SetUserActive(ctx, &adminv1.SetUserActiveRequest{Provider: "default", Username: "alice", Active: false})
			return err
		},
	}
	for _, tt := range tests {
		for method, call := range calls {
			t.Run(tt.name+"/"+method, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for _, v := range tt.md {
					ctx = metadata.AppendToOutgoingContext(ctx, "authorization", v)
				}
				wantCode(t, call(ctx), tt.want)
			})
		}
	}
	// No refused SetUserActive got through.
	wantAllowed(t, f.checkUser(t, "alice"))

	t.Run("allowed: the operator's token, and a partner operator's", func(t *testing.T) {
		partnerOp := mint(t, ks.partner, userClaims("pat", jwt.MapClaims{"iss": partnerIssuer, "roles": "admin"}))
		for _, tok := range []string{f.adminToken, partnerOp} {
			for method, call := range calls {
				if method == "SetUserActive" {
					continue
				}
				if err := call(as(t, tok)); err != nil {
					t.Errorf("%s: %v", method, err)
				}
			}
		}
	})

	t.Run("logs name tokens only by fingerprint", func(t *testing.T) {
		logs := f.logs.String()
		for _, tt := range tests {
			for _, v := range tt.md {
				_, tok, _ := strings.Cut(v, " ")
				if len(tok) > 16 && strings.Contains(logs, tok) {
					t.Errorf("%s: the logs contain the token", tt.name)
				}
			}
		}
		if !strings.Contains(logs, `"token_sha256"`) || !strings.Contains(logs, "admin call refused") {
			t.Errorf("logs lack the refusals with token fingerprints:\n%s", logs)
		}
	})
}

func TestRequireClaims(t *testing.T) {
	ks := newKeys(t)
	tests := []struct {
		name    string
		require map[string]any
		claims  jwt.MapClaims
		want    codes.Code
	}{
		{"string in a list claim", map[string]any{"roles": "admin"}, jwt.MapClaims{"roles": []any{"dev", "admin"}}, codes.OK},
		{"string equal", map[string]any{"roles": "admin"}, jwt.MapClaims{"roles": "admin"}, codes.OK},
		{"string not in the list", map[string]any{"roles": "admin"}, jwt.MapClaims{"roles": []any{"dev", "administrator"}}, codes.PermissionDenied},
		{"claim absent", map[string]any{"roles": "admin"}, nil, codes.PermissionDenied},
		{"nested dotted path", map[string]any{"realm_access.roles": "admin"}, jwt.MapClaims{"realm_access": map[string]any{"roles": []any{"user", "admin"}}}, codes.OK},
		{"nested dotted path, missing", map[string]any{"realm_access.roles": "admin"}, jwt.MapClaims{"realm_access": map[string]any{"groups": []any{"admin"}}}, codes.PermissionDenied},
		{"nested map in the config", map[string]any{"realm_access": map[string]any{"roles": "admin"}}, jwt.MapClaims{"realm_access": map[string]any{"roles": []any{"admin"}}}, codes.OK},
		{"YAML int equals JSON number", map[string]any{"level": 3}, jwt.MapClaims{"level": 3}, codes.OK},
		{"YAML int equals JSON 3.0", map[string]any{"level": 3}, jwt.MapClaims{"level": json.Number("3.0")}, codes.OK},
		{"YAML float equals JSON number", map[string]any{"level": 2.5}, jwt.MapClaims{"level": json.Number("2.50")}, codes.OK},
		{"number in a list claim", map[string]any{"groups": 7}, jwt.MapClaims{"groups": []any{1, 7}}, codes.OK},
		{"number differs", map[string]any{"level": 3}, jwt.MapClaims{"level": 4}, codes.PermissionDenied},
		{"number is not a string", map[string]any{"level": 3}, jwt.MapClaims{"level": "3"}, codes.PermissionDenied},
		{"bool equal", map[string]any{"admin": true}, jwt.MapClaims{"admin": true}, codes.OK},
		{"bool is not a string", map[string]any{"admin": true}, jwt.MapClaims{"admin": "true"}, codes.PermissionDenied},
		{"every requirement must hold", map[string]any{"roles": "admin", "org": "acme"}, jwt.MapClaims{"roles": "admin", "org": "other"}, codes.PermissionDenied},
		{"every requirement holds", map[string]any{"roles": "admin", "org": "acme"}, jwt.MapClaims{"roles": "admin", "org": "acme"}, codes.OK},
		{"claim name with dots, in brackets", map[string]any{"[https://example.com/role]": "admin"}, jwt.MapClaims{"https://example.com/role": "admin"}, codes.OK},
		{"a dot descends into nested claims only", map[string]any{"realm_access.roles": "ops"}, jwt.MapClaims{"realm_access": map[string]any{"roles": []any{"dev"}}, "realm_access.roles": "ops"}, codes.PermissionDenied},
		{"nested claim held", map[string]any{"realm_access.roles": "ops"}, jwt.MapClaims{"realm_access": map[string]any{"roles": []any{"dev", "ops"}}}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, fixtureOptions{keys: ks, requireClaims: tt.require})
			tok := mint(t, ks.dflt, userClaims("op", tt.claims))
			_, err := f.admin.ListUsers(as(t, tok), &adminv1.ListUsersRequest{})
			wantCode(t, err, tt.want)
		})
	}
}

func TestNewRefusesBadRequiredClaims(t *testing.T) {
	ks := newKeys(t)
	db, err := bolt.Open(bolt.Options{Path: filepath.Join(t.TempDir(), "users.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tests := []struct {
		name     string
		require  map[string]any
		wantPath string
	}{
		{"a list", map[string]any{"roles": []any{"admin", "ops"}}, "roles"},
		{"no value", map[string]any{"roles": nil}, "roles"},
		{"an empty map", map[string]any{"realm_access": map[string]any{}}, "realm_access"},
		{"nested list", map[string]any{"realm_access": map[string]any{"roles": []any{"a"}}}, "realm_access.roles"},
		{"not a number", map[string]any{"level": math.Inf(1)}, "level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := admin.New(admin.Options{Users: db, Policy: admin.Policy{Verifier: ks.router(t), RequireClaims: tt.require}})
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			if want := "admin.require_claims." + tt.wantPath + ":"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		})
	}
}

func TestStoreFailureIsUnavailable(t *testing.T) {
	f := start(t, fixtureOptions{})
	ctx := as(t, f.adminToken)
	if _, err := f.admin.ListUsers(ctx, &adminv1.ListUsersRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := f.admin.GetUser(ctx, &adminv1.GetUserRequest{Provider: "default", Username: "alice"})
	wantCode(t, err, codes.Unavailable)
}
