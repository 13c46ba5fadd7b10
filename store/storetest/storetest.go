// Package storetest is the behaviour every jwtauthz user store shares,
// as one test suite: the bbolt store and the etcd store both run it, so
// that the Check path and the admin API see the same thing whichever
// backend is configured.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
)

// Store is what the suite drives: the methods the Check path, the admin
// API and serve use.
type Store interface {
	Login(ctx context.Context, l store.Login) (store.Identity, error)
	User(ctx context.Context, provider, username string) (*adminv1.User, error)
	List(ctx context.Context, provider string, afterID uint64, limit int) ([]*adminv1.User, error)
	SetActive(ctx context.Context, provider, username string, active bool) (*adminv1.User, error)
	Flush() error
	Close() error
}

// Opener opens a store on data of its own, ready for Logins, and closes it
// when the test ends. Every call opens the same data, so that a test can
// close the store and open it again; it closes one before it opens the
// next.
type Opener func(t *testing.T) Store

// NewOpener gives each test fresh, empty data: a new file, a new prefix.
type NewOpener func(t *testing.T) Opener

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Run runs every case of the suite, each on the fresh data of newOpener.
func Run(t *testing.T, newOpener NewOpener) {
	cases := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"LoginCreatesThenUpdates", testLoginCreatesThenUpdates},
		{"LoginOlderAtKeepsLastLogin", testLoginOlderAtKeepsLastLogin},
		{"UserIncludesPending", testUserIncludesPending},
		{"LoginClaims", testLoginClaims},
		{"LoginConcurrentFirst", testLoginConcurrentFirst},
		{"IDsAcrossReopen", testIDsAcrossReopen},
		{"WriteBehindFlushedOnClose", testWriteBehindFlushedOnClose},
		{"SetActive", testSetActive},
		{"NotFound", testNotFound},
		{"List", testList},
		{"ListWhileCreating", testListWhileCreating},
		{"KeysDoNotCollide", testKeysDoNotCollide},
		{"LoginInvalidUTF8", testLoginInvalidUTF8},
		{"LoginAfterClose", testLoginAfterClose},
		{"GroupCommitBadRecordFailsAlone", testGroupCommitBadRecordFailsAlone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newOpener(t)) })
	}
}

func mustLogin(t *testing.T, s Store, l store.Login) store.Identity {
	t.Helper()
	id, err := s.Login(context.Background(), l)
	if err != nil {
		t.Fatalf("Login(%q, %q): %v", l.Provider, l.Username, err)
	}
	return id
}

func mustUser(t *testing.T, s Store, provider, username string) *adminv1.User {
	t.Helper()
	u, err := s.User(context.Background(), provider, username)
	if err != nil {
		t.Fatalf("User(%q, %q): %v", provider, username, err)
	}
	return u
}

func mustFlush(t *testing.T, s Store) {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func mustClose(t *testing.T, s Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// allIDs lists every user's id, in the order List pages through them.
func allIDs(t *testing.T, s Store) []uint64 {
	t.Helper()
	users, err := s.List(context.Background(), "", 0, 0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var ids []uint64
	for _, u := range users {
		ids = append(ids, u.GetId())
	}
	return ids
}

func testLoginCreatesThenUpdates(t *testing.T, open Opener) {
	s := open(t)
	t1 := t0.Add(time.Minute)

	first := mustLogin(t, s, store.Login{Provider: "p", Username: "alice", Subject: "sub-1", At: t0})
	if want := (store.Identity{ID: 1, Active: true, New: true}); first != want {
		t.Errorf("first Login = %+v, want %+v", first, want)
	}
	second := mustLogin(t, s, store.Login{Provider: "p", Username: "alice", Subject: "sub-1", At: t1})
	if want := (store.Identity{ID: first.ID, Active: true}); second != want {
		t.Errorf("second Login = %+v, want %+v", second, want)
	}

	want := &adminv1.User{
		Id:         first.ID,
		Provider:   "p",
		Username:   "alice",
		Subject:    "sub-1",
		CreatedAt:  timestamppb.New(t0),
		LastLogin:  timestamppb.New(t1),
		LoginCount: 2,
		Active:     true,
	}
	mustFlush(t, s)
	if diff := cmp.Diff(want, mustUser(t, s, "p", "alice"), protocmp.Transform()); diff != "" {
		t.Errorf("User after Flush (-want +got):\n%s", diff)
	}
	mustClose(t, s)
	s = open(t)
	if diff := cmp.Diff(want, mustUser(t, s, "p", "alice"), protocmp.Transform()); diff != "" {
		t.Errorf("User after reopen (-want +got):\n%s", diff)
	}
}

func testLoginOlderAtKeepsLastLogin(t *testing.T, open Opener) {
	s := open(t)
	t1 := t0.Add(time.Hour)
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t1})
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0}) // a late reporter
	mustFlush(t, s)
	if got := mustUser(t, s, "p", "u").GetLastLogin().AsTime(); !got.Equal(t1) {
		t.Errorf("last_login = %v, want %v", got, t1)
	}
}

func testUserIncludesPending(t *testing.T, open Opener) {
	s := open(t)
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0, Claims: map[string]string{"email": "old@example.com"}})
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t1})
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t2, Claims: map[string]string{"email": "new@example.com"}})

	want := &adminv1.User{
		Id:         1,
		Provider:   "p",
		Username:   "u",
		CreatedAt:  timestamppb.New(t0),
		LastLogin:  timestamppb.New(t2),
		LoginCount: 3,
		Active:     true,
		Claims:     map[string]string{"email": "new@example.com"},
	}
	if diff := cmp.Diff(want, mustUser(t, s, "p", "u"), protocmp.Transform()); diff != "" {
		t.Errorf("User before Flush (-want +got):\n%s", diff)
	}
	users, err := s.List(context.Background(), "", 0, 0)
	if err != nil || len(users) != 1 {
		t.Fatalf("List = %d users, %v; want 1", len(users), err)
	}
	if diff := cmp.Diff(want, users[0], protocmp.Transform()); diff != "" {
		t.Errorf("List before Flush (-want +got):\n%s", diff)
	}
	mustFlush(t, s)
	// Nothing is counted twice once the pending state is stored.
	if diff := cmp.Diff(want, mustUser(t, s, "p", "u"), protocmp.Transform()); diff != "" {
		t.Errorf("User after Flush (-want +got):\n%s", diff)
	}
	mustFlush(t, s)
	mustClose(t, s)
	s = open(t)
	if diff := cmp.Diff(want, mustUser(t, s, "p", "u"), protocmp.Transform()); diff != "" {
		t.Errorf("User after reopen (-want +got):\n%s", diff)
	}
}

func testLoginClaims(t *testing.T, newOpen Opener) {
	tests := []struct {
		name   string
		first  map[string]string
		second map[string]string
		want   map[string]string
	}{
		{name: "unchanged", first: map[string]string{"email": "a@x"}, second: map[string]string{"email": "a@x"}, want: map[string]string{"email": "a@x"}},
		{name: "changed value", first: map[string]string{"email": "a@x"}, second: map[string]string{"email": "b@x"}, want: map[string]string{"email": "b@x"}},
		{name: "claim added", first: nil, second: map[string]string{"roles": "admin,dev"}, want: map[string]string{"roles": "admin,dev"}},
		{name: "claims gone", first: map[string]string{"email": "a@x"}, second: nil, want: nil},
	}
	s := newOpen(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := fmt.Sprintf("u%d", i)
			mustLogin(t, s, store.Login{Provider: "p", Username: name, At: t0, Claims: tt.first})
			second := tt.second
			mustLogin(t, s, store.Login{Provider: "p", Username: name, At: t0, Claims: second})
			mustFlush(t, s)
			if diff := cmp.Diff(tt.want, mustUser(t, s, "p", name).GetClaims()); diff != "" {
				t.Errorf("stored claims (-want +got):\n%s", diff)
			}
		})
	}
}

func testLoginConcurrentFirst(t *testing.T, open Opener) {
	const n = 100
	s := open(t)
	FirstLoginRace(t, n, func(int) Store { return s })
	mustClose(t, s)

	s = open(t)
	if got := allIDs(t, s); len(got) != 1 {
		t.Errorf("ids after reopen = %v, want one user", got)
	}
	got := mustUser(t, s, "p", "racer")
	if got.GetLoginCount() != n {
		t.Errorf("login_count = %d, want %d", got.GetLoginCount(), n)
	}
	if want := t0.Add((n - 1) * time.Second); !got.GetLastLogin().AsTime().Equal(want) {
		t.Errorf("last_login = %v, want %v", got.GetLastLogin().AsTime(), want)
	}
}

func testIDsAcrossReopen(t *testing.T, open Opener) {
	s := open(t)
	var before []uint64
	for _, name := range []string{"u1", "u2", "u3"} {
		before = append(before, mustLogin(t, s, store.Login{Provider: "p", Username: name, At: t0}).ID)
	}
	for i := 1; i < len(before); i++ {
		if before[i] <= before[i-1] {
			t.Errorf("ids %v do not increase", before)
		}
	}
	mustClose(t, s)

	s = open(t)
	if got := mustLogin(t, s, store.Login{Provider: "p", Username: "u2", At: t0}); got.ID != before[1] || got.New {
		t.Errorf("Login of u2 after reopen = %+v, want ID %d, not new", got, before[1])
	}
	if got := mustLogin(t, s, store.Login{Provider: "p", Username: "u4", At: t0}); got.ID <= before[2] || !got.New {
		t.Errorf("Login of u4 after reopen = %+v, want a new ID above %d", got, before[2])
	}
}

func testWriteBehindFlushedOnClose(t *testing.T, open Opener) {
	s := open(t)
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	claims := map[string]string{"email": "u@example.com"}
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0})
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t1})
	mustFlush(t, s)
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t2, Claims: claims})
	// No Flush: Close writes what is pending.
	mustClose(t, s)

	s = open(t)
	got := mustUser(t, s, "p", "u")
	if got.GetLoginCount() != 3 || !got.GetLastLogin().AsTime().Equal(t2) || !cmp.Equal(got.GetClaims(), claims) {
		t.Errorf("after reopen: login_count %d, last_login %v, claims %v; want 3, %v, %v",
			got.GetLoginCount(), got.GetLastLogin().AsTime(), got.GetClaims(), t2, claims)
	}
}

func testSetActive(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	created := mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0})

	got, err := s.SetActive(ctx, "p", "u", false)
	if err != nil {
		t.Fatalf("SetActive(false): %v", err)
	}
	if got.GetActive() || got.GetId() != created.ID || got.GetUsername() != "u" {
		t.Errorf("SetActive(false) = id %d %q, active %t; want id %d \"u\", inactive", got.GetId(), got.GetUsername(), got.GetActive(), created.ID)
	}
	if id := mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0.Add(time.Minute)}); id != (store.Identity{ID: created.ID}) {
		t.Errorf("Login of inactive user = %+v, want %+v", id, store.Identity{ID: created.ID})
	}
	mustFlush(t, s)
	if rec := mustUser(t, s, "p", "u"); rec.GetActive() || rec.GetLoginCount() != 1 || !rec.GetLastLogin().AsTime().Equal(t0) {
		t.Errorf("after an inactive Login: active %t, login_count %d, last_login %v; want false, 1, %v",
			rec.GetActive(), rec.GetLoginCount(), rec.GetLastLogin().AsTime(), t0)
	}
	mustClose(t, s)

	s = open(t)
	if id := mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0}); id.Active {
		t.Errorf("Login after reopen = %+v, want inactive", id)
	}
	if _, err := s.SetActive(ctx, "p", "u", true); err != nil {
		t.Fatalf("SetActive(true): %v", err)
	}
	if id := mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0.Add(time.Hour)}); id != (store.Identity{ID: created.ID, Active: true}) {
		t.Errorf("Login after reactivation = %+v, want %+v", id, store.Identity{ID: created.ID, Active: true})
	}
	if got := mustUser(t, s, "p", "u"); !got.GetActive() || got.GetLoginCount() != 2 {
		t.Errorf("User after reactivation: active %t, login_count %d; want true, 2", got.GetActive(), got.GetLoginCount())
	}
}

func testNotFound(t *testing.T, open Opener) {
	s := open(t)
	mustLogin(t, s, store.Login{Provider: "a", Username: "bob", At: t0})
	ctx := context.Background()

	ops := map[string]func(provider, username string) (*adminv1.User, error){
		"User": func(p, u string) (*adminv1.User, error) { return s.User(ctx, p, u) },
		"SetActive": func(p, u string) (*adminv1.User, error) {
			return s.SetActive(ctx, p, u, false)
		},
	}
	keys := []struct{ name, provider, username string }{
		{"unknown username", "a", "carol"},
		{"other provider", "b", "bob"},
		{"provider prefix", "ab", "ob"},
		{"username prefix", "a", "bo"},
		{"slash moved", "a/b", "ob"},
	}
	for opName, op := range ops {
		for _, k := range keys {
			t.Run(opName+"/"+k.name, func(t *testing.T) {
				if _, err := op(k.provider, k.username); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s(%q, %q) = %v, want %v", opName, k.provider, k.username, err, store.ErrNotFound)
				}
			})
		}
	}
	// Nothing was created by asking.
	if got := allIDs(t, s); len(got) != 1 {
		t.Errorf("ids = %v, want one user", got)
	}
}

func testList(t *testing.T, open Opener) {
	s := open(t)
	// ids 1..10; odd ids are provider "a", even ids "ab".
	for i := 1; i <= 10; i++ {
		p := "a"
		if i%2 == 0 {
			p = "ab"
		}
		mustLogin(t, s, store.Login{Provider: p, Username: fmt.Sprintf("u%02d", i), At: t0})
	}

	tests := []struct {
		name     string
		provider string
		afterID  uint64
		limit    int
		want     []uint64
	}{
		{name: "all", want: []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{name: "first page", limit: 3, want: []uint64{1, 2, 3}},
		{name: "middle page", afterID: 3, limit: 3, want: []uint64{4, 5, 6}},
		{name: "last page", afterID: 9, limit: 3, want: []uint64{10}},
		{name: "past the end", afterID: 10, limit: 3, want: nil},
		{name: "max id", afterID: ^uint64(0), want: nil},
		{name: "provider a", provider: "a", want: []uint64{1, 3, 5, 7, 9}},
		{name: "provider ab page", provider: "ab", afterID: 4, limit: 2, want: []uint64{6, 8}},
		{name: "unknown provider", provider: "b", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, err := s.List(context.Background(), tt.provider, tt.afterID, tt.limit)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var got []uint64
			for _, u := range users {
				got = append(got, u.GetId())
				if tt.provider != "" && u.GetProvider() != tt.provider {
					t.Errorf("user %d has provider %q, want %q", u.GetId(), u.GetProvider(), tt.provider)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}

func testListWhileCreating(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t)
	for i := range 20 {
		mustLogin(t, s, store.Login{Provider: "p", Username: fmt.Sprintf("old%d", i), At: t0})
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	creatorErr := make(chan error, 1)
	wg.Go(func() {
		defer done.Store(true)
		for i := range 100 {
			if _, err := s.Login(ctx, store.Login{Provider: "p", Username: fmt.Sprintf("new%d", i), At: t0}); err != nil {
				creatorErr <- err
				return
			}
		}
	})

	seen := PageWhile(t, s, done.Load)
	wg.Wait()
	select {
	case err := <-creatorErr:
		t.Fatalf("creating users: %v", err)
	default:
	}

	all := allIDs(t, s)
	if len(all) != 120 {
		t.Fatalf("%d users stored, want 120", len(all))
	}
	if diff := cmp.Diff(all, seen); diff != "" {
		t.Errorf("ids seen by paging (-stored +seen):\n%s", diff)
	}
}

func testKeysDoNotCollide(t *testing.T, open Opener) {
	keys := []struct{ provider, username string }{
		{"a", "bc"},
		{"ab", "c"},
		{"a", "b"},
		{"a", "b\x00c"},
		{"a", "b\x00"},
		{"a", "\x00"},
		{"a", ""},
		{"ab", ""},
		{"a", "\x02ab"},
		{"a", "b\u00e9\U0001F600"},
		{"a/b", "c"},
		{"a", "b/c"},
		{"a%2Fb", "c"},
		{"a", "b%2Fc"},
		{"a", "b%"},
	}
	s := open(t)
	ids := map[uint64]bool{}
	for _, k := range keys {
		id := mustLogin(t, s, store.Login{Provider: k.provider, Username: k.username, At: t0})
		if !id.New || ids[id.ID] {
			t.Errorf("Login(%q, %q) = %+v, want a new user with an unused id", k.provider, k.username, id)
		}
		ids[id.ID] = true
	}
	mustClose(t, s)

	s = open(t)
	if got := allIDs(t, s); len(got) != len(keys) {
		t.Errorf("%d users stored, want %d", len(got), len(keys))
	}
	for _, k := range keys {
		u := mustUser(t, s, k.provider, k.username)
		if u.GetProvider() != k.provider || u.GetUsername() != k.username {
			t.Errorf("User(%q, %q) = %q, %q", k.provider, k.username, u.GetProvider(), u.GetUsername())
		}
		if id := mustLogin(t, s, store.Login{Provider: k.provider, Username: k.username, At: t0}); id.New || id.ID != u.GetId() {
			t.Errorf("Login(%q, %q) after reopen = %+v, want the known user %d", k.provider, k.username, id, u.GetId())
		}
	}
}

func testLoginInvalidUTF8(t *testing.T, open Opener) {
	// Claims decoded from JSON are valid UTF-8; a proto string must be.
	s := open(t)
	if _, err := s.Login(context.Background(), store.Login{Provider: "p", Username: "b\xff", At: t0}); err == nil {
		t.Error("Login with an invalid UTF-8 username succeeded")
	}
	if got := allIDs(t, s); len(got) != 0 {
		t.Errorf("ids = %v, want none", got)
	}
	if id := mustLogin(t, s, store.Login{Provider: "p", Username: "b", At: t0}); id.ID != 1 || !id.New {
		t.Errorf("next Login = %+v, want the new user 1", id)
	}
}

func testLoginAfterClose(t *testing.T, open Opener) {
	s := open(t)
	mustLogin(t, s, store.Login{Provider: "p", Username: "u", At: t0})
	mustClose(t, s)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Login(context.Background(), store.Login{Provider: "p", Username: "u", At: t0}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Login after Close = %v, want %v", err, store.ErrClosed)
	}
}

func testGroupCommitBadRecordFailsAlone(t *testing.T, open Opener) {
	// First Logins racing share commits; a record that cannot be written
	// (a name that is not UTF-8) must fail alone, and every other user be
	// created exactly once with an id of its own.
	const n = 40
	s := open(t)
	start := make(chan struct{})
	var wg sync.WaitGroup
	ids := make([]store.Identity, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			ids[i], errs[i] = s.Login(context.Background(), store.Login{Provider: "p", Username: fmt.Sprintf("u%d", i), At: t0})
		})
	}
	badErrs := make([]error, 5)
	for i := range badErrs {
		wg.Go(func() {
			<-start
			_, badErrs[i] = s.Login(context.Background(), store.Login{Provider: "p", Username: fmt.Sprintf("bad%d\xff", i), At: t0})
		})
	}
	close(start)
	wg.Wait()

	seen := map[uint64]bool{}
	for i := range n {
		if errs[i] != nil || !ids[i].New || seen[ids[i].ID] {
			t.Errorf("Login u%d = %+v, %v; want a new user with an unused id", i, ids[i], errs[i])
		}
		seen[ids[i].ID] = true
	}
	for i, err := range badErrs {
		if err == nil {
			t.Errorf("Login bad%d succeeded, want an encoding error", i)
		}
	}
	mustClose(t, s)
	s = open(t)
	if got := allIDs(t, s); len(got) != n {
		t.Errorf("%d users stored, want %d", len(got), n)
	}
}

// Benchmark measures Login on s, a fresh store: known users (served from
// memory; the Check path's common case), alone and in parallel, and new
// users (a durable commit each, shared when concurrent).
func Benchmark(b *testing.B, s Store) {
	ctx := context.Background()
	claims := map[string]string{"email": "alice@example.com"}
	const users = 1024
	logins := make([]store.Login, users)
	for i := range logins {
		logins[i] = store.Login{Provider: "default", Username: fmt.Sprintf("user-%04d", i), Subject: "s", Claims: claims, At: t0}
		if _, err := s.Login(ctx, logins[i]); err != nil {
			b.Fatal(err)
		}
	}
	login := func(b *testing.B, l store.Login) {
		if _, err := s.Login(ctx, l); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("known/serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			login(b, logins[0])
		}
	})
	b.Run("known/parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			i := next.Add(97)
			for pb.Next() {
				i++
				login(b, logins[i%users])
			}
		})
	})
	var fresh atomic.Uint64
	newLogin := func() store.Login {
		return store.Login{Provider: "default", Username: fmt.Sprintf("new-%d", fresh.Add(1)), At: t0}
	}
	b.Run("new/serial", func(b *testing.B) {
		for b.Loop() {
			login(b, newLogin())
		}
	})
	b.Run("new/parallel16", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				login(b, newLogin())
			}
		})
	})
}

// PageWhile pages through s's users, 7 at a time by the last id seen,
// while users are being created, until finished reports true and a page
// comes back empty; it returns the ids in the order it saw them.
func PageWhile(t *testing.T, s Store, finished func() bool) []uint64 {
	t.Helper()
	var seen []uint64
	var after uint64
	for {
		last := finished()
		page, err := s.List(context.Background(), "", after, 7)
		if err != nil {
			t.Fatalf("List after %d: %v", after, err)
		}
		for _, u := range page {
			seen = append(seen, u.GetId())
			after = u.GetId()
		}
		if len(page) == 0 && last {
			return seen
		}
	}
}

// FirstLoginRace makes n Logins of one new user ("p", "racer") at once,
// the i-th at t0 + i seconds on the store of(i), and checks that they all
// got the same active identity and that exactly one of them created it.
func FirstLoginRace(t *testing.T, n int, of func(i int) Store) store.Identity {
	t.Helper()
	ids := make([]store.Identity, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			ids[i], errs[i] = of(i).Login(context.Background(), store.Login{Provider: "p", Username: "racer", At: t0.Add(time.Duration(i) * time.Second)})
		})
	}
	close(start)
	wg.Wait()

	news := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Login %d: %v", i, errs[i])
		}
		if ids[i].ID != ids[0].ID || !ids[i].Active {
			t.Errorf("Login %d = %+v, want ID %d, active", i, ids[i], ids[0].ID)
		}
		if ids[i].New {
			news++
		}
	}
	if news != 1 {
		t.Errorf("%d Logins got New, want 1", news)
	}
	return ids[0]
}
