// Package store keeps jwtauthz's users in a bbolt file.
//
// A user is keyed by (provider, username) and stored as an
// adminv1.User, proto-binary-encoded. New users are written durably
// before Login returns; last_login and login_count of known users are
// kept in memory and written behind every FlushInterval, so the Check
// path touches the disk only once per user.
package store

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

const (
	defaultOpenTimeout   = 2 * time.Second
	defaultFlushInterval = time.Second

	// numShards splits the in-memory users so that concurrent Logins of
	// different users rarely wait on the same mutex. A power of two.
	numShards = 64
)

var (
	// bucketUsers maps a user key (see appendKey) to the adminv1.User record.
	bucketUsers = []byte("users")
	// bucketIDs maps a big-endian uint64 id to the user key, for paging by
	// id. Its sequence hands out the ids.
	bucketIDs = []byte("ids")
)

// ErrNotFound is returned when no user has the given provider and username.
var ErrNotFound = errors.New("user not found")

// ErrClosed is returned by Login after Close.
var ErrClosed = errors.New("store closed")

// Options configures Open.
type Options struct {
	// Path is the bbolt file; it is created with mode 0600 when missing.
	Path string
	// OpenTimeout bounds the wait for the file lock (bbolt.Options.Timeout),
	// so that a second process gets a clear error rather than a hang.
	// Zero means 2s.
	OpenTimeout time.Duration
	// FlushInterval is the write-behind period for last_login, login_count
	// and claims of known users. Zero means 1s.
	FlushInterval time.Duration
	// Logger receives write-behind failures; nil discards them.
	Logger *slog.Logger
}

// DB is an open user store. Its methods are safe for concurrent use.
type DB struct {
	path   string
	bolt   *bbolt.DB
	log    *slog.Logger
	seed   maphash.Seed
	shards [numShards]shard

	// flushMu orders the writers that read a record and write it back
	// (Flush, SetActive) and lets readers (User, List) add the pending
	// state to what they read without counting a flush twice.
	flushMu sync.RWMutex

	closed    atomic.Bool
	stop      chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// shard is one part of the in-memory users.
type shard struct {
	mu       sync.Mutex
	users    map[string]*user     // by user key
	creating map[string]*creation // first Logins whose record is being written
	dirty    []*user              // users with pending write-behind state

	_ [64]byte // keeps neighbouring shards' mutexes off one cache line
}

// user is the hot state of one stored user, guarded by its shard's mutex.
type user struct {
	key    string // the bbolt key, shared with the map key
	id     uint64
	active bool

	dirty     bool              // queued in shard.dirty
	last      time.Time         // latest Login.At not yet stored; zero if none
	count     uint64            // Logins not yet added to the stored login_count
	claims    map[string]string // latest claims; replaced, never modified
	claimsGen uint64            // bumped whenever claims is replaced
	storedGen uint64            // claimsGen as of the last successful flush
}

// creation is a first Login in flight; later Logins of the same key wait
// for it instead of writing a second record.
type creation struct {
	done chan struct{}
	err  error // set before done is closed

	// setActive is set by a SetActive that changed the record after it was
	// written but before the creator put the user in memory.
	setActive *bool
}

// lockTimeoutError explains bbolt's bare "timeout" when the file is locked.
type lockTimeoutError struct{ err error }

func (e lockTimeoutError) Error() string {
	return e.err.Error() + " (is another jwtauthz process using it?)"
}

func (e lockTimeoutError) Unwrap() error { return e.err }

// Open opens or creates the store at opts.Path, loads every user's hot
// state into memory and starts the write-behind loop. Close releases it.
func Open(opts Options) (*DB, error) {
	if opts.Path == "" {
		return nil, errors.New("open store: empty path")
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = defaultOpenTimeout
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = defaultFlushInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}

	b, err := bbolt.Open(opts.Path, 0o600, &bbolt.Options{Timeout: opts.OpenTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		err = lockTimeoutError{err}
	}
	if err != nil {
		return nil, fmt.Errorf("open store %q: %w", opts.Path, err)
	}
	db := &DB{
		path:     opts.Path,
		bolt:     b,
		log:      opts.Logger,
		seed:     maphash.MakeSeed(),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	for i := range db.shards {
		db.shards[i].users = make(map[string]*user)
		db.shards[i].creating = make(map[string]*creation)
	}
	if err := db.load(); err != nil {
		_ = b.Close() // the load error is the one worth reporting
		return nil, fmt.Errorf("open store %q: %w", opts.Path, err)
	}
	go db.loop(opts.FlushInterval)
	return db, nil
}

// load creates the buckets and reads every user's hot state.
func (db *DB) load() error {
	return db.bolt.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketIDs); err != nil {
			return fmt.Errorf("create bucket %q: %w", bucketIDs, err)
		}
		users, err := tx.CreateBucketIfNotExists(bucketUsers)
		if err != nil {
			return fmt.Errorf("create bucket %q: %w", bucketUsers, err)
		}
		return users.ForEach(func(k, v []byte) error {
			var rec adminv1.User
			if err := proto.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode user %x: %w", k, err)
			}
			u := &user{
				key:    string(k),
				id:     rec.GetId(),
				active: rec.GetActive(),
				claims: rec.GetClaims(),
			}
			db.shardFor(k).users[u.key] = u
			return nil
		})
	})
}

// shardFor returns the shard that holds key.
func (db *DB) shardFor(key []byte) *shard {
	return &db.shards[maphash.Bytes(db.seed, key)&(numShards-1)]
}

// loop flushes the write-behind state every interval until Close.
func (db *DB) loop(interval time.Duration) {
	defer close(db.loopDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
			if err := db.Flush(); err != nil {
				// The pending state is kept for the next tick; an operator
				// must look if this repeats, since it is lost on a crash.
				db.log.Error("store write-behind", "err", err)
			}
		}
	}
}

// Close stops the write-behind loop, flushes the pending state and closes
// the file. Later calls return the first call's result.
//
// Logins that race with Close may be counted in memory after the final
// flush; stop serving Checks before closing the store.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		close(db.stop)
		<-db.loopDone
		err := errors.Join(db.Flush(), db.bolt.Close())
		if err != nil {
			db.closeErr = fmt.Errorf("close store %q: %w", db.path, err)
		}
	})
	return db.closeErr
}

// pending is one user's write-behind state as taken by a flush.
type pending struct {
	s           *shard
	u           *user
	last        time.Time
	count       uint64
	claims      map[string]string
	claimsGen   uint64
	claimsDirty bool
}

// Flush writes the pending last_login, login_count and claims of every
// user now, in one transaction. On failure the pending state is kept for
// the next Flush.
func (db *DB) Flush() error {
	db.flushMu.Lock()
	defer db.flushMu.Unlock()

	var ps []pending
	for i := range db.shards {
		s := &db.shards[i]
		s.mu.Lock()
		for _, u := range s.dirty {
			u.dirty = false
			ps = append(ps, pending{
				s:           s,
				u:           u,
				last:        u.last,
				count:       u.count,
				claims:      u.claims,
				claimsGen:   u.claimsGen,
				claimsDirty: u.claimsGen != u.storedGen,
			})
		}
		clear(s.dirty)
		s.dirty = s.dirty[:0]
		s.mu.Unlock()
	}
	if len(ps) == 0 {
		return nil
	}

	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		for i := range ps {
			p := &ps[i]
			key := []byte(p.u.key)
			var rec adminv1.User
			if err := proto.Unmarshal(users.Get(key), &rec); err != nil {
				return fmt.Errorf("decode user %d: %w", p.u.id, err)
			}
			if rec.GetId() == 0 {
				return fmt.Errorf("user %d: record missing", p.u.id)
			}
			applyPending(&rec, p.last, p.count, p.claims, p.claimsDirty)
			v, err := proto.Marshal(&rec)
			if err != nil {
				return fmt.Errorf("encode user %d: %w", p.u.id, err)
			}
			if err := users.Put(key, v); err != nil {
				return fmt.Errorf("put user %d: %w", p.u.id, err)
			}
		}
		return nil
	})

	for i := range ps {
		p := &ps[i]
		p.s.mu.Lock()
		u := p.u
		if err != nil {
			if !u.dirty {
				u.dirty = true
				p.s.dirty = append(p.s.dirty, u)
			}
		} else {
			// Logins during the flush added to the pending state; keep
			// only what they added.
			u.count -= p.count
			if !u.last.After(p.last) {
				u.last = time.Time{}
			}
			if p.claimsDirty {
				u.storedGen = p.claimsGen
			}
		}
		p.s.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("flush %d users: %w", len(ps), err)
	}
	return nil
}

// applyPending adds write-behind state to a stored record.
func applyPending(rec *adminv1.User, last time.Time, count uint64, claims map[string]string, claimsDirty bool) {
	if !last.IsZero() && (rec.GetLastLogin() == nil || last.After(rec.GetLastLogin().AsTime())) {
		rec.LastLogin = timestamppb.New(last)
	}
	rec.LoginCount += count
	if claimsDirty {
		rec.Claims = claims
	}
}
