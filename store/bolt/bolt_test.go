package bolt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/jwtauthz/jwtauthz/internal/testlog"
	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
	"github.com/jwtauthz/jwtauthz/store/storetest"
)

// The behaviour every backend shares is in package storetest
// (suite_test.go); what follows is bbolt's own: the file, its lock, and
// what happens when writing it fails.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func tempPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "users.db")
}

// openDB opens a store at path and closes it when the test ends.
func openDB(t testing.TB, opts Options) (*store.Engine, *backend) {
	t.Helper()
	e, b, err := open(opts)
	if err != nil {
		t.Fatalf("Open(%q): %v", opts.Path, err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, b
}

func mustLogin(t testing.TB, e *store.Engine, l store.Login) store.Identity {
	t.Helper()
	id, err := e.Login(context.Background(), l)
	if err != nil {
		t.Fatalf("Login(%q, %q): %v", l.Provider, l.Username, err)
	}
	return id
}

// stored reads a record straight from the file, without the pending
// write-behind state; nil if there is none.
func stored(t testing.TB, b *backend, provider, username string) *adminv1.User {
	t.Helper()
	var rec *adminv1.User
	err := b.db.View(func(tx *bbolt.Tx) error {
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

func TestFileHoldsOneRecordPerUser(t *testing.T) {
	// 100 racing first Logins of one user and 20 of others, with names
	// that would collide under a naive key: one record and one id entry
	// each in the file.
	path := tempPath(t)
	e, _ := openDB(t, Options{Path: path})
	var wg sync.WaitGroup
	start := make(chan struct{})
	names := []string{"racer"}
	for i := range 20 {
		names = append(names, fmt.Sprintf("u\x00%d", i))
	}
	for i := range 100 {
		for _, name := range names[:1+min(i, 20)] {
			wg.Go(func() {
				<-start
				if _, err := e.Login(context.Background(), store.Login{Provider: "p", Username: name, At: t0}); err != nil {
					t.Errorf("Login(%q): %v", name, err)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if users, ids := countRecords(t, path); users != len(names) || ids != len(names) {
		t.Errorf("records: %d users, %d ids; want %d each", users, ids, len(names))
	}
}

func TestWriteBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := tempPath(t)
		const interval = time.Second
		start := time.Now()
		e, b, err := open(Options{Path: path, FlushInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		t1, t2 := t0.Add(time.Minute), t0.Add(2*time.Minute)
		mustLogin(t, e, store.Login{Provider: "p", Username: "u", At: t0})
		mustLogin(t, e, store.Login{Provider: "p", Username: "u", At: t1})

		// Just before the first tick of the write-behind loop.
		time.Sleep(time.Until(start.Add(interval)) - time.Nanosecond)
		synctest.Wait()
		if got := stored(t, b, "p", "u"); got.GetLoginCount() != 1 || !got.GetLastLogin().AsTime().Equal(t0) {
			t.Errorf("before the flush: login_count %d, last_login %v; want 1, %v", got.GetLoginCount(), got.GetLastLogin().AsTime(), t0)
		}

		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := stored(t, b, "p", "u"); got.GetLoginCount() != 2 || !got.GetLastLogin().AsTime().Equal(t1) {
			t.Errorf("after the flush: login_count %d, last_login %v; want 2, %v", got.GetLoginCount(), got.GetLastLogin().AsTime(), t1)
		}

		// Close writes what the loop has not written yet.
		mustLogin(t, e, store.Login{Provider: "p", Username: "u", At: t2})
		if err := e.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		e, b, err = open(Options{Path: path, FlushInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if got := stored(t, b, "p", "u"); got.GetLoginCount() != 3 || !got.GetLastLogin().AsTime().Equal(t2) {
			t.Errorf("after reopen: login_count %d, last_login %v; want 3, %v", got.GetLoginCount(), got.GetLastLogin().AsTime(), t2)
		}
	})
}

func TestWriteBehindFailureKeepsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs testlog.Buffer
		e, b, err := open(Options{
			Path:          tempPath(t),
			FlushInterval: time.Second,
			Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		mustLogin(t, e, store.Login{Provider: "p", Username: "u", At: t0})
		mustLogin(t, e, store.Login{Provider: "p", Username: "u", At: t0.Add(time.Minute)})
		// The file goes away under the store: every write fails from now on.
		if err := b.db.Close(); err != nil {
			t.Fatal(err)
		}

		time.Sleep(time.Second)
		synctest.Wait()
		if got := logs.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, bbolt.ErrDatabaseNotOpen.Error()) {
			t.Errorf("log after a failed flush = %q, want an error with err=%q", got, bbolt.ErrDatabaseNotOpen)
		}
		// The pending login is still there: the final flush of Close tries
		// it again, and fails the same way.
		if err := e.Flush(); !errors.Is(err, bbolt.ErrDatabaseNotOpen) || !strings.Contains(err.Error(), "flush 1 users") {
			t.Errorf("Flush = %v, want 1 user still pending and an error wrapping %v", err, bbolt.ErrDatabaseNotOpen)
		}
		if err := e.Close(); !errors.Is(err, bbolt.ErrDatabaseNotOpen) {
			t.Errorf("Close = %v, want an error wrapping %v", err, bbolt.ErrDatabaseNotOpen)
		}
	})
}

func TestOpenLocked(t *testing.T) {
	path := tempPath(t)
	openDB(t, Options{Path: path})

	const timeout = 200 * time.Millisecond
	start := time.Now()
	e, err := Open(Options{Path: path, OpenTimeout: timeout})
	elapsed := time.Since(start)
	if err == nil {
		e.Close()
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

func TestCreateFailure(t *testing.T) {
	path := tempPath(t)
	e, b, err := open(Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	known := mustLogin(t, e, store.Login{Provider: "p", Username: "known", At: t0})
	// The file goes away under the store: every write fails from now on.
	if err := b.db.Close(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 { // a failure is not remembered: the second Login tries again
		_, err := e.Login(context.Background(), store.Login{Provider: "p", Username: "new", At: t0})
		if !errors.Is(err, bbolt.ErrDatabaseNotOpen) {
			t.Errorf("Login %d of a new user = %v, want an error wrapping %v", i, err, bbolt.ErrDatabaseNotOpen)
		}
	}
	got, err := e.Login(context.Background(), store.Login{Provider: "p", Username: "known", At: t0.Add(time.Minute)})
	if want := (store.Identity{ID: known.ID, Active: true}); err != nil || got != want {
		t.Errorf("Login of a known user = %+v, %v; want %+v, nil", got, err, want)
	}
	if err := e.Close(); !errors.Is(err, bbolt.ErrDatabaseNotOpen) {
		t.Errorf("Close = %v, want an error wrapping %v", err, bbolt.ErrDatabaseNotOpen)
	}

	if users, ids := countRecords(t, path); users != 1 || ids != 1 {
		t.Errorf("records: %d users, %d ids; want 1, 1", users, ids)
	}
	e, _ = openDB(t, Options{Path: path})
	if rec, err := e.User(context.Background(), "p", "known"); err != nil || rec.GetId() != known.ID || rec.GetLoginCount() != 1 {
		t.Errorf("known user after reopen: %v, %v; want id %d, login_count 1", rec, err, known.ID)
	}
	if _, err := e.User(context.Background(), "p", "new"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("User(new) after reopen = %v, want %v", err, store.ErrNotFound)
	}
	if id := mustLogin(t, e, store.Login{Provider: "p", Username: "new", At: t0}); !id.New || id.ID <= known.ID {
		t.Errorf("Login of the new user after reopen = %+v, want new with an id above %d", id, known.ID)
	}
}

func TestGroupCommit(t *testing.T) {
	// Concurrent first Logins share commits: fewer transactions than
	// users. Every user is still durable before its Login returns.
	path := tempPath(t)
	e, b := openDB(t, Options{Path: path})
	before := lastTxID(t, b)
	const n = 64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			mustLogin(t, e, store.Login{Provider: "p", Username: fmt.Sprintf("u%d", i), At: t0})
		})
	}
	close(start)
	wg.Wait()
	commits := lastTxID(t, b) - before
	if commits >= n {
		t.Errorf("%d first Logins took %d transactions, want fewer (group commit)", n, commits)
	}
	t.Logf("%d first Logins, %d transactions", n, commits)
}

// lastTxID is the id of the last committed read-write transaction.
func lastTxID(t testing.TB, b *backend) int {
	t.Helper()
	var id int
	if err := b.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

func BenchmarkLogin(b *testing.B) {
	e, _ := openDB(b, Options{Path: tempPath(b)})
	storetest.Benchmark(b, e)
}
