package main

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/jwtauthz/jwtauthz/config"
	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/signing"
	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
)

// usersLoginAt is when the test users signed in.
var usersLoginAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// adminFixture is a running admin API over a real store, as serve wires it.
type adminFixture struct {
	addr string
	db   *store.Engine
	key  crypto.Signer
	// opToken holds the required claim; plainToken is a valid token
	// without it.
	opToken, plainToken string
}

// adminSetup writes e's config with the admin API on, requiring the
// claims of the YAML mapping require, and builds it as serve does: the
// providers and the open store, closed when the test ends.
func adminSetup(t *testing.T, e *servetest.Env, require string) (*config.Config, *config.Providers, *store.Engine) {
	t.Helper()
	e.WriteConfig(t, fmt.Sprintf("listen: 127.0.0.1:0\nhttp_listen: \"\"\nadmin:\n  listen: 127.0.0.1:0\n  require_claims: %s\nstore: {path: %s}\nproviders:\n  - algorithms: [ES256]\n    pem_files: [%s]\n",
		require, e.DBPath, e.PublicPEM))
	cfg := e.Config(t)
	provs, err := config.BuildProviders(cfg, config.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := config.OpenStore(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return cfg, provs, db
}

func startAdminForTest(t *testing.T) *adminFixture {
	t.Helper()
	e := servetest.New(t)
	cfg, provs, db := adminSetup(t, e, "{roles: admin}")
	_, srv, addr, err := startAdmin(cfg, config.AdminPolicy(cfg, provs), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAdmin(srv, 5*time.Second) })
	f := &adminFixture{addr: addr.String(), db: db, key: e.Key}
	f.opToken = f.mint(t, "op", map[string]any{"roles": []any{"dev", "admin"}}, time.Hour)
	f.plainToken = f.mint(t, "alice", nil, time.Hour)
	return f
}

func (f *adminFixture) mint(t *testing.T, user string, claims map[string]any, ttl time.Duration) string {
	t.Helper()
	tok, err := signing.Mint(f.key, user, signing.Options{TTL: ttl, Now: time.Now(), Claims: claims})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *adminFixture) login(t *testing.T, provider, username string) {
	t.Helper()
	if _, err := f.db.Login(context.Background(), store.Login{Provider: provider, Username: username, Subject: "sub-" + username, At: usersLoginAt}); err != nil {
		t.Fatal(err)
	}
}

// active reports whether the Check path would let username of the default
// provider through: it asks the store as a Check does.
func (f *adminFixture) active(t *testing.T, username string) bool {
	t.Helper()
	id, err := f.db.Login(context.Background(), store.Login{Provider: "default", Username: username, At: usersLoginAt})
	if err != nil {
		t.Fatal(err)
	}
	return id.Active
}

// runUsersForTest runs "jwtauthz users args..." as run and main would, with
// env as the environment.
func runUsersForTest(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := runUsers(ctx, &cliEnv{
		getenv: func(k string) string { return env[k] },
		stdin:  strings.NewReader(""),
		stdout: &out,
		stderr: &errOut,
	}, args)
	if errors.Is(err, flag.ErrHelp) {
		err = nil // run treats -h as success
	}
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// tableRows splits table output into rows of fields, header first; the
// LAST LOGIN header is two fields.
func tableRows(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestUsersList(t *testing.T) {
	f := startAdminForTest(t)
	for _, name := range []string{"alice", "bob", "carol", "dave", "erin"} {
		f.login(t, "default", name)
	}
	f.login(t, "partner", "pat")
	at := usersLoginAt.Format(time.RFC3339)

	t.Run("table follows every page", func(t *testing.T) {
		out, stderr, code := runUsersForTest(t, nil, "list", "--addr", f.addr, "--token", f.opToken, "--page-size", "2")
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		want := [][]string{
			{"ID", "PROVIDER", "USERNAME", "ACTIVE", "LOGINS", "LAST", "LOGIN", "CREATED"},
			{"1", "default", "alice", "yes", "1", at, at},
			{"2", "default", "bob", "yes", "1", at, at},
			{"3", "default", "carol", "yes", "1", at, at},
			{"4", "default", "dave", "yes", "1", at, at},
			{"5", "default", "erin", "yes", "1", at, at},
			{"6", "partner", "pat", "yes", "1", at, at},
		}
		if diff := cmp.Diff(want, tableRows(out)); diff != "" {
			t.Errorf("table (-want +got):\n%s\n%s", diff, out)
		}
	})

	t.Run("json is one array of every user", func(t *testing.T) {
		out, stderr, code := runUsersForTest(t, map[string]string{"JWTAUTHZ_TOKEN": f.opToken}, "--addr", f.addr, "list", "-o", "json", "--page-size", "4")
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		var raws []json.RawMessage
		if err := json.Unmarshal([]byte(out), &raws); err != nil {
			t.Fatalf("output is not a JSON array: %v\n%s", err, out)
		}
		got := make([]*adminv1.User, len(raws))
		for i, r := range raws {
			got[i] = new(adminv1.User)
			if err := protojson.Unmarshal(r, got[i]); err != nil {
				t.Fatalf("user %d: %v", i, err)
			}
		}
		want, err := f.db.List(context.Background(), "", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("users (-want +got):\n%s", diff)
		}
		if !strings.Contains(out, `"active": true`) {
			t.Errorf("output lacks \"active\": true:\n%s", out)
		}
	})

	t.Run("provider filter", func(t *testing.T) {
		out, stderr, code := runUsersForTest(t, nil, "list", "--provider", "partner", "--addr", f.addr, "--token", f.opToken)
		if code != 0 {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
		rows := tableRows(out)
		if len(rows) != 2 || rows[1][2] != "pat" {
			t.Errorf("want the header and pat only, got:\n%s", out)
		}
	})

	t.Run("no users: header only, and an empty JSON array", func(t *testing.T) {
		out, _, code := runUsersForTest(t, nil, "list", "--provider", "nobody", "--addr", f.addr, "--token", f.opToken)
		if code != 0 || len(tableRows(out)) != 1 {
			t.Errorf("exit %d, output:\n%s\nwant 0 and the header only", code, out)
		}
		out, _, code = runUsersForTest(t, nil, "list", "--provider", "nobody", "-o", "json", "--addr", f.addr, "--token", f.opToken)
		if code != 0 || strings.TrimSpace(out) != "[]" {
			t.Errorf("exit %d, output %q, want 0 and []", code, out)
		}
	})
}

func TestUsersGetDeactivateActivate(t *testing.T) {
	f := startAdminForTest(t)
	f.login(t, "default", "alice")
	f.login(t, "default", "bob")
	at := usersLoginAt.Format(time.RFC3339)
	header := []string{"ID", "PROVIDER", "USERNAME", "ACTIVE", "LOGINS", "LAST", "LOGIN", "CREATED"}
	env := map[string]string{"JWTAUTHZ_TOKEN": f.opToken}

	// Flags before, between and after the subcommand and NAME.
	out, stderr, code := runUsersForTest(t, nil, "get", "alice", "--addr", f.addr, "--token", f.opToken)
	if code != 0 {
		t.Fatalf("get: exit %d, stderr:\n%s", code, stderr)
	}
	if diff := cmp.Diff([][]string{header, {"1", "default", "alice", "yes", "1", at, at}}, tableRows(out)); diff != "" {
		t.Errorf("get table (-want +got):\n%s", diff)
	}

	out, stderr, code = runUsersForTest(t, env, "--addr", f.addr, "get", "-o", "json", "alice")
	if code != 0 {
		t.Fatalf("get -o json: exit %d, stderr:\n%s", code, stderr)
	}
	var u adminv1.User
	if err := protojson.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("get -o json is not one User object: %v\n%s", err, out)
	}
	if u.GetUsername() != "alice" || u.GetId() != 1 || !u.GetActive() || u.GetSubject() != "sub-alice" {
		t.Errorf("get -o json = %v", &u)
	}

	out, stderr, code = runUsersForTest(t, env, "deactivate", "--addr", f.addr, "alice")
	if code != 0 {
		t.Fatalf("deactivate: exit %d, stderr:\n%s", code, stderr)
	}
	if rows := tableRows(out); len(rows) != 2 || rows[1][2] != "alice" || rows[1][3] != "no" {
		t.Errorf("deactivate printed:\n%s\nwant alice with ACTIVE no", out)
	}
	if f.active(t, "alice") {
		t.Error("alice is still active after deactivate returned")
	}
	if !f.active(t, "bob") {
		t.Error("bob was deactivated too")
	}

	out, stderr, code = runUsersForTest(t, env, "--addr", f.addr, "activate", "alice", "-o", "json")
	if code != 0 {
		t.Fatalf("activate: exit %d, stderr:\n%s", code, stderr)
	}
	u.Reset()
	if err := protojson.Unmarshal([]byte(out), &u); err != nil || !u.GetActive() {
		t.Errorf("activate -o json = %q (%v), want an active user", out, err)
	}
	if !f.active(t, "alice") {
		t.Error("alice is not active after activate returned")
	}
}

func TestUsersErrors(t *testing.T) {
	f := startAdminForTest(t)
	f.login(t, "default", "alice")

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := lis.Addr().String()
	lis.Close()

	withToken := map[string]string{"JWTAUTHZ_TOKEN": f.opToken}
	otherKey, err := signing.Generate("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	strangerToken, err := signing.Mint(otherKey, "op", signing.Options{TTL: time.Hour, Claims: map[string]any{"roles": "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	expiredToken, err := signing.Mint(f.key, "op", signing.Options{TTL: time.Minute, Now: time.Now().Add(-time.Hour), Claims: map[string]any{"roles": "admin"}})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"unknown user", withToken, []string{"get", "bob", "--addr", f.addr}, 1, "NotFound"},
		{"unknown provider", withToken, []string{"deactivate", "alice", "--provider", "partner", "--addr", f.addr}, 1, "NotFound"},
		{"token without the required claim", nil, []string{"list", "--addr", f.addr, "--token", f.plainToken}, 1, "PermissionDenied"},
		{"token of an unknown key", nil, []string{"list", "--addr", f.addr, "--token", strangerToken}, 1, "Unauthenticated"},
		{"expired token", nil, []string{"get", "alice", "--addr", f.addr, "--token", expiredToken}, 1, "Unauthenticated"},
		{"no token", nil, []string{"list", "--addr", f.addr}, 2, "JWTAUTHZ_TOKEN"},
		{"missing --addr", withToken, []string{"list"}, 2, "--addr is required"},
		{"no subcommand", withToken, []string{"--addr", f.addr}, 2, "missing subcommand"},
		{"unknown subcommand", withToken, []string{"delete", "alice", "--addr", f.addr}, 2, `unknown subcommand "delete"`},
		{"get without NAME", withToken, []string{"get", "--addr", f.addr}, 2, "exactly one NAME"},
		{"get with two NAMEs", withToken, []string{"get", "alice", "bob", "--addr", f.addr}, 2, "exactly one NAME"},
		{"list with a NAME", withToken, []string{"list", "alice", "--addr", f.addr}, 2, "list takes no NAME"},
		{"bad output format", withToken, []string{"list", "-o", "yaml", "--addr", f.addr}, 2, "want table or json"},
		{"negative page size", withToken, []string{"list", "--page-size", "-1", "--addr", f.addr}, 2, "--page-size"},
		{"unknown flag", withToken, []string{"list", "--addr", f.addr, "--nope"}, 2, "flag provided but not defined"},
		{"nothing listening", withToken, []string{"list", "--addr", closedAddr, "--timeout", "5s"}, 2, "cannot reach the admin API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := runUsersForTest(t, tt.env, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.wantStderr)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing on failure", out)
			}
			for _, tok := range []string{f.opToken, f.plainToken, strangerToken, expiredToken} {
				if strings.Contains(stderr, tok) {
					t.Error("stderr echoes a token")
				}
			}
		})
	}
	if !f.active(t, "alice") {
		t.Error("a refused command deactivated alice")
	}
}

func TestUsersHelp(t *testing.T) {
	_, stderr, code := runUsersForTest(t, nil, "-h")
	if code != 0 {
		t.Errorf("users -h: exit %d, want 0", code)
	}
	for _, want := range []string{"list", "deactivate NAME", "JWTAUTHZ_TOKEN", "-addr", "-o", "-provider", "-page-size", "-token"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("users -h does not mention %q:\n%s", want, stderr)
		}
	}
}

func TestParseInterleaved(t *testing.T) {
	tests := []struct {
		args    []string
		wantPos []string
		wantA   string
	}{
		{[]string{"get", "alice", "--a", "x"}, []string{"get", "alice"}, "x"},
		{[]string{"--a", "x", "get", "alice"}, []string{"get", "alice"}, "x"},
		{[]string{"get", "--a=x", "alice"}, []string{"get", "alice"}, "x"},
		{[]string{"get", "--", "--a"}, []string{"get", "--a"}, ""},
		{nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			a := fs.String("a", "", "")
			pos, err := parseInterleaved(fs, tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantPos, pos); diff != "" || *a != tt.wantA {
				t.Errorf("positional (-want +got):\n%s\n-a = %q, want %q", diff, *a, tt.wantA)
			}
		})
	}
}

func TestStartAdminServesHealthAndReflection(t *testing.T) {
	f := startAdminForTest(t)
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// No token needed: probes carry none.
	for _, svc := range []string{"", "jwtauthz.admin.v1.UserAdmin"} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health %q: %v", svc, err)
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, want SERVING", svc, resp.GetStatus())
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "jwtauthz.admin.v1.UserAdmin") {
		t.Errorf("reflection lists %v, want jwtauthz.admin.v1.UserAdmin among them", names)
	}
}

func TestStartAdminConfig(t *testing.T) {
	cfg, provs, db := adminSetup(t, servetest.New(t), "{roles: admin}")

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name    string
		edit    func(c *config.Config)
		wantErr string // "" for a nil server and no error
	}{
		{"off", func(c *config.Config) { c.Admin.Listen = "" }, ""},
		{"a list as the value", func(c *config.Config) { c.Admin.RequireClaims = map[string]any{"roles": []any{"a", "b"}} }, "admin.require_claims.roles"},
		{"address in use", func(c *config.Config) { c.Admin.Listen = busy.Addr().String() }, "admin.listen " + busy.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := *cfg
			tt.edit(&c)
			_, srv, addr, err := startAdmin(&c, config.AdminPolicy(&c, provs), db, nil)
			stopAdmin(srv, time.Second)
			switch {
			case tt.wantErr == "" && (err != nil || srv != nil || addr != nil):
				t.Errorf("startAdmin = %v, %v, %v; want nothing started and no error", srv, addr, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("startAdmin error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestUsersConfigFileRequireClaims reads require_claims from a real file,
// as YAML types them, and holds a nested path and a number to them.
func TestUsersConfigFileRequireClaims(t *testing.T) {
	e := servetest.New(t)
	cfg, provs, db := adminSetup(t, e, "{realm_access.roles: admin, level: 2}")
	_, srv, addr, err := startAdmin(cfg, config.AdminPolicy(cfg, provs), db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stopAdmin(srv, time.Second)

	tests := []struct {
		name   string
		claims map[string]any
		want   int
	}{
		{"both held", map[string]any{"realm_access": map[string]any{"roles": []any{"x", "admin"}}, "level": 2}, 0},
		{"number of another value", map[string]any{"realm_access": map[string]any{"roles": []any{"admin"}}, "level": 3}, 1},
		{"role missing", map[string]any{"realm_access": map[string]any{"roles": []any{"x"}}, "level": 2}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := signing.Mint(e.Key, "op", signing.Options{TTL: time.Hour, Claims: tt.claims})
			if err != nil {
				t.Fatal(err)
			}
			_, stderr, code := runUsersForTest(t, nil, "list", "--addr", addr.String(), "--token", tok)
			if code != tt.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.want, stderr)
			}
		})
	}
}
