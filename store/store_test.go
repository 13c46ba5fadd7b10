package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func tempPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "users.db")
}

// openDB opens a store at path and closes it when the test ends.
func openDB(t testing.TB, path string) *DB {
	t.Helper()
	db, err := Open(Options{Path: path})
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func mustLogin(t testing.TB, db *DB, l Login) Identity {
	t.Helper()
	id, err := db.Login(context.Background(), l)
	if err != nil {
		t.Fatalf("Login(%q, %q): %v", l.Provider, l.Username, err)
	}
	return id
}

func mustUser(t testing.TB, db *DB, provider, username string) *adminv1.User {
	t.Helper()
	u, err := db.User(context.Background(), provider, username)
	if err != nil {
		t.Fatalf("User(%q, %q): %v", provider, username, err)
	}
	return u
}

func mustFlush(t testing.TB, db *DB) {
	t.Helper()
	if err := db.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// stored reads a record straight from the file, without the pending
// write-behind state; nil if there is none.
func stored(t testing.TB, db *DB, provider, username string) *adminv1.User {
	t.Helper()
	var rec *adminv1.User
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketUsers).Get(appendKey(nil, provider, username))
		if v == nil {
			return nil
		}
		rec = new(adminv1.User)
		return proto.Unmarshal(v, rec)
	})
	if err != nil {
		t.Fatalf("read record of %q/%q: %v", provider, username, err)
	}
	return rec
}

// countRecords counts the entries of both buckets of a closed store file.
func countRecords(t testing.TB, path string) (users, ids int) {
	t.Helper()
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("bbolt.Open(%q): %v", path, err)
	}
	defer b.Close()
	err = b.View(func(tx *bbolt.Tx) error {
		users = tx.Bucket(bucketUsers).Stats().KeyN
		ids = tx.Bucket(bucketIDs).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatalf("count records: %v", err)
	}
	return users, ids
}

func TestLoginCreatesThenUpdates(t *testing.T) {
	db := openDB(t, tempPath(t))
	t1 := t0.Add(time.Minute)

	first := mustLogin(t, db, Login{Provider: "p", Username: "alice", Subject: "sub-1", At: t0})
	if want := (Identity{ID: 1, Active: true, New: true}); first != want {
		t.Errorf("first Login = %+v, want %+v", first, want)
	}
	second := mustLogin(t, db, Login{Provider: "p", Username: "alice", Subject: "sub-1", At: t1})
	if want := (Identity{ID: first.ID, Active: true}); second != want {
		t.Errorf("second Login = %+v, want %+v", second, want)
	}

	mustFlush(t, db)
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
	if diff := cmp.Diff(want, stored(t, db, "p", "alice"), protocmp.Transform()); diff != "" {
		t.Errorf("stored record (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustUser(t, db, "p", "alice"), protocmp.Transform()); diff != "" {
		t.Errorf("User (-want +got):\n%s", diff)
	}
}

func TestLoginOlderAtKeepsLastLogin(t *testing.T) {
	db := openDB(t, tempPath(t))
	t1 := t0.Add(time.Hour)
	mustLogin(t, db, Login{Provider: "p", Username: "u", At: t1})
	mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0}) // a late reporter
	mustFlush(t, db)
	if got := stored(t, db, "p", "u").GetLastLogin().AsTime(); !got.Equal(t1) {
		t.Errorf("last_login = %v, want %v", got, t1)
	}
}

func TestUserIncludesPending(t *testing.T) {
	db := openDB(t, tempPath(t))
	t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
	mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0, Claims: map[string]string{"email": "old@example.com"}})
	mustLogin(t, db, Login{Provider: "p", Username: "u", At: t1})
	mustLogin(t, db, Login{Provider: "p", Username: "u", At: t2, Claims: map[string]string{"email": "new@example.com"}})

	if got := stored(t, db, "p", "u").GetLoginCount(); got != 1 {
		t.Fatalf("stored login_count before Flush = %d, want 1", got)
	}
	got := mustUser(t, db, "p", "u")
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
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("User before Flush (-want +got):\n%s", diff)
	}
	mustFlush(t, db)
	if diff := cmp.Diff(want, stored(t, db, "p", "u"), protocmp.Transform()); diff != "" {
		t.Errorf("stored after Flush (-want +got):\n%s", diff)
	}
	// Nothing is counted twice once the pending state is on disk.
	if diff := cmp.Diff(want, mustUser(t, db, "p", "u"), protocmp.Transform()); diff != "" {
		t.Errorf("User after Flush (-want +got):\n%s", diff)
	}
}

func TestLoginClaims(t *testing.T) {
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, tempPath(t))
			mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0, Claims: tt.first})
			second := tt.second
			mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0, Claims: second})
			mustFlush(t, db)
			if diff := cmp.Diff(tt.want, stored(t, db, "p", "u").GetClaims()); diff != "" {
				t.Errorf("stored claims (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoginConcurrentFirst(t *testing.T) {
	const n = 100
	path := tempPath(t)
	db, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}

	ids := make([]Identity, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			ids[i], errs[i] = db.Login(context.Background(), Login{Provider: "p", Username: "racer", At: t0.Add(time.Duration(i) * time.Second)})
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
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	if users, idN := countRecords(t, path); users != 1 || idN != 1 {
		t.Errorf("records: %d users, %d ids; want 1, 1", users, idN)
	}
	db = openDB(t, path)
	got := mustUser(t, db, "p", "racer")
	if got.GetLoginCount() != n {
		t.Errorf("login_count = %d, want %d", got.GetLoginCount(), n)
	}
	if want := t0.Add((n - 1) * time.Second); !got.GetLastLogin().AsTime().Equal(want) {
		t.Errorf("last_login = %v, want %v", got.GetLastLogin().AsTime(), want)
	}
}

func TestIDsAcrossReopen(t *testing.T) {
	path := tempPath(t)
	db, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	var before []uint64
	for _, name := range []string{"u1", "u2", "u3"} {
		before = append(before, mustLogin(t, db, Login{Provider: "p", Username: name, At: t0}).ID)
	}
	for i := 1; i < len(before); i++ {
		if before[i] <= before[i-1] {
			t.Errorf("ids %v do not increase", before)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = openDB(t, path)
	if got := mustLogin(t, db, Login{Provider: "p", Username: "u2", At: t0}); got.ID != before[1] || got.New {
		t.Errorf("Login of u2 after reopen = %+v, want ID %d, not new", got, before[1])
	}
	if got := mustLogin(t, db, Login{Provider: "p", Username: "u4", At: t0}); got.ID <= before[2] || !got.New {
		t.Errorf("Login of u4 after reopen = %+v, want a new ID above %d", got, before[2])
	}
}

func TestWriteBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := tempPath(t)
		const interval = time.Second
		start := time.Now()
		db, err := Open(Options{Path: path, FlushInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
		mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0})
		mustLogin(t, db, Login{Provider: "p", Username: "u", At: t1})

		// Just before the first tick of the write-behind loop.
		time.Sleep(time.Until(start.Add(interval)) - time.Nanosecond)
		synctest.Wait()
		if got := stored(t, db, "p", "u"); got.GetLoginCount() != 1 || !got.GetLastLogin().AsTime().Equal(t0) {
			t.Errorf("before the flush: login_count %d, last_login %v; want 1, %v", got.GetLoginCount(), got.GetLastLogin().AsTime(), t0)
		}

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := stored(t, db, "p", "u"); got.GetLoginCount() != 2 || !got.GetLastLogin().AsTime().Equal(t1) {
			t.Errorf("after the flush: login_count %d, last_login %v; want 2, %v", got.GetLoginCount(), got.GetLastLogin().AsTime(), t1)
		}

		// Close writes what the loop has not written yet.
		mustLogin(t, db, Login{Provider: "p", Username: "u", At: t2})
		if err := db.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		db, err = Open(Options{Path: path, FlushInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if got := stored(t, db, "p", "u"); got.GetLoginCount() != 3 || !got.GetLastLogin().AsTime().Equal(t2) {
			t.Errorf("after reopen: login_count %d, last_login %v; want 3, %v", got.GetLoginCount(), got.GetLastLogin().AsTime(), t2)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestWriteBehindFailureKeepsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs syncBuffer
		db, err := Open(Options{
			Path:          tempPath(t),
			FlushInterval: time.Second,
			Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0})
		mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0.Add(time.Minute)})
		// The file goes away under the store: every write fails from now on.
		if err := db.bolt.Close(); err != nil {
			t.Fatal(err)
		}

		time.Sleep(time.Second)
		synctest.Wait()
		if got := logs.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "err=") || !strings.Contains(got, bbolt.ErrDatabaseNotOpen.Error()) {
			t.Errorf("log after a failed flush = %q, want an error with err=%q", got, bbolt.ErrDatabaseNotOpen)
		}
		key := appendKey(nil, "p", "u")
		s := db.shardFor(key)
		s.mu.Lock()
		u := s.users[string(key)]
		count, dirty := u.count, u.dirty
		s.mu.Unlock()
		if count != 1 || !dirty {
			t.Errorf("after a failed flush: pending count %d, dirty %t; want 1, true", count, dirty)
		}
		if err := db.Close(); !errors.Is(err, bbolt.ErrDatabaseNotOpen) {
			t.Errorf("Close = %v, want an error wrapping %v", err, bbolt.ErrDatabaseNotOpen)
		}
	})
}

func TestSetActive(t *testing.T) {
	ctx := context.Background()
	path := tempPath(t)
	db, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	created := mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0})

	got, err := db.SetActive(ctx, "p", "u", false)
	if err != nil {
		t.Fatalf("SetActive(false): %v", err)
	}
	if got.GetActive() || got.GetId() != created.ID {
		t.Errorf("SetActive(false) = id %d, active %t; want id %d, inactive", got.GetId(), got.GetActive(), created.ID)
	}
	if id := mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0.Add(time.Minute)}); id != (Identity{ID: created.ID}) {
		t.Errorf("Login of inactive user = %+v, want %+v", id, Identity{ID: created.ID})
	}
	mustFlush(t, db)
	if rec := stored(t, db, "p", "u"); rec.GetActive() || rec.GetLoginCount() != 1 || !rec.GetLastLogin().AsTime().Equal(t0) {
		t.Errorf("stored after inactive Login: active %t, login_count %d, last_login %v; want false, 1, %v",
			rec.GetActive(), rec.GetLoginCount(), rec.GetLastLogin().AsTime(), t0)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = openDB(t, path)
	if id := mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0}); id.Active {
		t.Errorf("Login after reopen = %+v, want inactive", id)
	}
	if _, err := db.SetActive(ctx, "p", "u", true); err != nil {
		t.Fatalf("SetActive(true): %v", err)
	}
	if id := mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0.Add(time.Hour)}); id != (Identity{ID: created.ID, Active: true}) {
		t.Errorf("Login after reactivation = %+v, want %+v", id, Identity{ID: created.ID, Active: true})
	}
	if got := mustUser(t, db, "p", "u"); !got.GetActive() || got.GetLoginCount() != 2 {
		t.Errorf("User after reactivation: active %t, login_count %d; want true, 2", got.GetActive(), got.GetLoginCount())
	}
}

func TestNotFound(t *testing.T) {
	db := openDB(t, tempPath(t))
	mustLogin(t, db, Login{Provider: "a", Username: "bob", At: t0})
	ctx := context.Background()

	ops := map[string]func(provider, username string) (*adminv1.User, error){
		"User": func(p, u string) (*adminv1.User, error) { return db.User(ctx, p, u) },
		"SetActive": func(p, u string) (*adminv1.User, error) {
			return db.SetActive(ctx, p, u, false)
		},
	}
	keys := []struct{ name, provider, username string }{
		{"unknown username", "a", "carol"},
		{"other provider", "b", "bob"},
		{"provider prefix", "ab", "ob"},
		{"username prefix", "a", "bo"},
	}
	for opName, op := range ops {
		for _, k := range keys {
			t.Run(opName+"/"+k.name, func(t *testing.T) {
				if _, err := op(k.provider, k.username); !errors.Is(err, ErrNotFound) {
					t.Errorf("%s(%q, %q) = %v, want %v", opName, k.provider, k.username, err, ErrNotFound)
				}
			})
		}
	}
	// Nothing was created by asking.
	if got, err := db.List(ctx, "", 0, 0); err != nil || len(got) != 1 {
		t.Errorf("List = %d users, %v; want 1, nil", len(got), err)
	}
}

func TestList(t *testing.T) {
	db := openDB(t, tempPath(t))
	// ids 1..10; odd ids are provider "a", even ids "ab".
	for i := 1; i <= 10; i++ {
		p := "a"
		if i%2 == 0 {
			p = "ab"
		}
		mustLogin(t, db, Login{Provider: p, Username: fmt.Sprintf("u%02d", i), At: t0})
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
			users, err := db.List(context.Background(), tt.provider, tt.afterID, tt.limit)
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

func TestListWhileCreating(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, tempPath(t))
	for i := range 20 {
		mustLogin(t, db, Login{Provider: "p", Username: fmt.Sprintf("old%d", i), At: t0})
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	creatorErr := make(chan error, 1)
	wg.Go(func() {
		defer done.Store(true)
		for i := range 100 {
			if _, err := db.Login(ctx, Login{Provider: "p", Username: fmt.Sprintf("new%d", i), At: t0}); err != nil {
				creatorErr <- err
				return
			}
		}
	})

	var seen []uint64
	var after uint64
	for {
		finished := done.Load()
		page, err := db.List(ctx, "", after, 7)
		if err != nil {
			t.Fatalf("List after %d: %v", after, err)
		}
		for _, u := range page {
			seen = append(seen, u.GetId())
			after = u.GetId()
		}
		if len(page) == 0 && finished {
			break
		}
	}
	wg.Wait()
	select {
	case err := <-creatorErr:
		t.Fatalf("creating users: %v", err)
	default:
	}

	var all []uint64
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketIDs).ForEach(func(k, _ []byte) error {
			var id uint64
			for _, b := range k {
				id = id<<8 | uint64(b)
			}
			all = append(all, id)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 120 {
		t.Fatalf("%d ids stored, want 120", len(all))
	}
	if diff := cmp.Diff(all, seen); diff != "" {
		t.Errorf("ids seen by paging (-stored +seen):\n%s", diff)
	}
}

func TestOpenLocked(t *testing.T) {
	path := tempPath(t)
	openDB(t, path)

	const timeout = 200 * time.Millisecond
	start := time.Now()
	db, err := Open(Options{Path: path, OpenTimeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		db.Close()
		t.Fatal("second Open of a store in use succeeded")
	}
	if !errors.Is(err, bbolt.ErrTimeout) {
		t.Errorf("second Open = %v, want an error wrapping %v", err, bbolt.ErrTimeout)
	}
	want := fmt.Sprintf("open store %q: timeout (is another jwtauthz process using it?)", path)
	if err.Error() != want {
		t.Errorf("second Open error = %q, want %q", err, want)
	}
	if elapsed > timeout+2*time.Second {
		t.Errorf("second Open took %v, want about %v", elapsed, timeout)
	}
}

func TestKeysDoNotCollide(t *testing.T) {
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
	}
	path := tempPath(t)
	db, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[uint64]bool{}
	for _, k := range keys {
		id := mustLogin(t, db, Login{Provider: k.provider, Username: k.username, At: t0})
		if !id.New || ids[id.ID] {
			t.Errorf("Login(%q, %q) = %+v, want a new user with an unused id", k.provider, k.username, id)
		}
		ids[id.ID] = true
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if users, idN := countRecords(t, path); users != len(keys) || idN != len(keys) {
		t.Errorf("records: %d users, %d ids; want %d each", users, idN, len(keys))
	}
	db = openDB(t, path)
	for _, k := range keys {
		u := mustUser(t, db, k.provider, k.username)
		if u.GetProvider() != k.provider || u.GetUsername() != k.username {
			t.Errorf("User(%q, %q) = %q, %q", k.provider, k.username, u.GetProvider(), u.GetUsername())
		}
	}
}

func TestCreateFailure(t *testing.T) {
	path := tempPath(t)
	db, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	known := mustLogin(t, db, Login{Provider: "p", Username: "known", At: t0})
	// The file goes away under the store: every write fails from now on.
	if err := db.bolt.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 { // a failure is not remembered: the second Login tries again
		_, err := db.Login(context.Background(), Login{Provider: "p", Username: "new", At: t0})
		if !errors.Is(err, bbolt.ErrDatabaseNotOpen) {
			t.Errorf("Login %d of a new user = %v, want an error wrapping %v", i, err, bbolt.ErrDatabaseNotOpen)
		}
	}
	got, err := db.Login(context.Background(), Login{Provider: "p", Username: "known", At: t0.Add(time.Minute)})
	if want := (Identity{ID: known.ID, Active: true}); err != nil || got != want {
		t.Errorf("Login of a known user = %+v, %v; want %+v, nil", got, err, want)
	}
	if err := db.Close(); !errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		t.Errorf("Close = %v, want an error wrapping %v", err, bbolt.ErrDatabaseNotOpen)
	}

	if users, ids := countRecords(t, path); users != 1 || ids != 1 {
		t.Errorf("records: %d users, %d ids; want 1, 1", users, ids)
	}
	db = openDB(t, path)
	if rec := mustUser(t, db, "p", "known"); rec.GetId() != known.ID || rec.GetLoginCount() != 1 {
		t.Errorf("known user after reopen: id %d, login_count %d; want %d, 1", rec.GetId(), rec.GetLoginCount(), known.ID)
	}
	if _, err := db.User(context.Background(), "p", "new"); !errors.Is(err, ErrNotFound) {
		t.Errorf("User(new) after reopen = %v, want %v", err, ErrNotFound)
	}
	if id := mustLogin(t, db, Login{Provider: "p", Username: "new", At: t0}); !id.New || id.ID <= known.ID {
		t.Errorf("Login of the new user after reopen = %+v, want new with an id above %d", id, known.ID)
	}
}

func TestLoginInvalidUTF8(t *testing.T) {
	// Claims decoded from JSON are valid UTF-8; a proto string must be.
	db := openDB(t, tempPath(t))
	if _, err := db.Login(context.Background(), Login{Provider: "p", Username: "b\xff", At: t0}); err == nil {
		t.Error("Login with an invalid UTF-8 username succeeded")
	}
	if got, err := db.List(context.Background(), "", 0, 0); err != nil || len(got) != 0 {
		t.Errorf("List = %d users, %v; want 0, nil", len(got), err)
	}
	if id := mustLogin(t, db, Login{Provider: "p", Username: "b", At: t0}); id.ID != 1 || !id.New {
		t.Errorf("next Login = %+v, want the new user 1", id)
	}
}

func TestCreateRetriedInBatch(t *testing.T) {
	// A failing create in a bbolt batch rolls the batch back and runs the
	// other creates again: each must still make exactly one record.
	const n = 20
	path := tempPath(t)
	db, err := Open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	ids := make([]Identity, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			ids[i], errs[i] = db.Login(context.Background(), Login{Provider: "p", Username: fmt.Sprintf("u%d", i), At: t0})
		})
	}
	for i := range 5 {
		wg.Go(func() {
			<-start
			_, _ = db.Login(context.Background(), Login{Provider: "p", Username: fmt.Sprintf("bad%d\xff", i), At: t0})
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
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if users, idN := countRecords(t, path); users != n || idN != n {
		t.Errorf("records: %d users, %d ids; want %d each", users, idN, n)
	}
}

func TestLoginAfterClose(t *testing.T) {
	db, err := Open(Options{Path: tempPath(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustLogin(t, db, Login{Provider: "p", Username: "u", At: t0})
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := db.Login(context.Background(), Login{Provider: "p", Username: "u", At: t0}); !errors.Is(err, ErrClosed) {
		t.Errorf("Login after Close = %v, want %v", err, ErrClosed)
	}
}

func BenchmarkLoginKnown(b *testing.B) {
	db := openDB(b, tempPath(b))
	ctx := context.Background()
	claims := map[string]string{"email": "alice@example.com"}
	const users = 1024
	logins := make([]Login, users)
	for i := range logins {
		logins[i] = Login{Provider: "default", Username: fmt.Sprintf("user-%04d", i), Subject: "s", Claims: claims, At: t0}
		mustLogin(b, db, logins[i])
	}

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		l := logins[0]
		for b.Loop() {
			if _, err := db.Login(ctx, l); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			i := next.Add(97)
			for pb.Next() {
				i++
				if _, err := db.Login(ctx, logins[i%users]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
