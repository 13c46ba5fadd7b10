// Package etcd keeps jwtauthz's users in etcd, so that several replicas
// of jwtauthz share one user registry.
//
// It behaves as the bbolt store does (package store): a user is keyed by
// (provider, username) and stored as an adminv1.User, proto-binary-encoded;
// a new user is committed before Login returns, exactly once however many
// replicas race, with an id unique across replicas; last_login,
// login_count and claims of known users are written behind, coalesced per
// replica, about once a second, and the replicas' counts add up.
//
// Every replica keeps each user's id and active flag in memory, so a known
// user's Login needs no round trip. The memory is loaded when the store
// starts and then follows a watch on the users, from the revision of the
// load: a deactivation through any replica reaches every replica as fast
// as etcd delivers the event. A watch that breaks resumes from the last
// revision seen; one whose history was compacted meanwhile reloads
// everything, so no change is missed.
//
// While etcd cannot be reached, known active users keep logging in from
// memory (their counts wait in memory), and everything that needs etcd —
// creating a user, the admin calls — fails with an error wrapping
// ErrUnavailable. Open does not wait for etcd: it keeps trying to load in
// the background, and Ready reports when it first succeeded.
package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
)

const (
	defaultPrefix         = "/jwtauthz/"
	defaultDialTimeout    = 5 * time.Second
	defaultRequestTimeout = 5 * time.Second
	defaultFlushInterval  = time.Second

	// maxRetryDelay caps the waits between tries to load the users, to
	// resume a watch and to reconnect.
	maxRetryDelay = 2 * time.Second
	// loadPage is how many users one read of the initial load returns.
	loadPage = 1000
	// txnChunk is how many keys one transaction reads or writes; etcd
	// refuses transactions of more than 128 operations by default.
	txnChunk = 64
	// maxAttempts bounds the retries of a transaction that lost a race.
	maxAttempts = 100

	// numShards splits the in-memory users so that concurrent Logins of
	// different users rarely wait on the same mutex. A power of two.
	numShards = 64
)

// ErrUnavailable is wrapped by the errors of operations that need etcd
// while it cannot be reached, or before the users were first loaded.
var ErrUnavailable = errors.New("etcd unavailable")

// Options configures Open.
type Options struct {
	// Endpoints are etcd's client URLs (http://, https://) or host:port.
	Endpoints []string
	// Prefix is put before every key; it should end with "/". Empty means
	// "/jwtauthz/".
	Prefix string
	// DialTimeout bounds connecting to etcd. Zero means 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds each request to etcd, so a stuck etcd fails a
	// request rather than holding it. Zero means 5s.
	RequestTimeout time.Duration
	// TLS is the client's TLS configuration; nil for plain connections.
	TLS *tls.Config
	// Username and Password authenticate to etcd when both are set.
	Username, Password string
	// FlushInterval is the write-behind period for last_login, login_count
	// and claims of known users. Zero means 1s.
	FlushInterval time.Duration
	// Logger receives load, watch and write-behind trouble; nil discards it.
	Logger *slog.Logger
}

// Store is a user store on etcd. Its methods are safe for concurrent use.
type Store struct {
	opts        Options
	log         *slog.Logger
	usersPrefix string // Prefix + "users/"
	idsPrefix   string // Prefix + "ids/"
	lastIDKey   string // Prefix + "last-id"
	seed        maphash.Seed
	shards      [numShards]shard

	// cli is set by the loader before loaded is closed; read it only after.
	cli    *clientv3.Client
	loaded chan struct{}

	// createSem lets one creation at a time ask etcd, so that this
	// replica's creations do not race each other for the id counter. It
	// also guards lastID and lastIDRev, the counter as last seen.
	createSem chan struct{}
	lastID    uint64
	lastIDRev int64

	// flushMu orders Flush against the readers (User, List, SetActive)
	// that add the pending state to a record they read, so that nothing is
	// counted twice.
	flushMu sync.RWMutex

	ctx       context.Context // ends at Close; stops the loader and the watch
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the loader and watch goroutine
	stopFlush chan struct{}
	flushDone chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// shard is one part of the in-memory users.
type shard struct {
	mu       sync.Mutex
	users    map[string]*user     // by key below users/
	creating map[string]*creation // first Logins whose record is being written
	dirty    []*user              // users with pending write-behind state

	_ [64]byte // keeps neighbouring shards' mutexes off one cache line
}

// user is the hot state of one stored user, guarded by its shard's mutex.
type user struct {
	key    string
	id     uint64
	active bool
	rev    int64 // mod revision of the record id and active came from

	dirty     bool              // queued in shard.dirty
	last      time.Time         // latest Login.At not yet stored; zero if none
	count     uint64            // Logins not yet added to the stored login_count
	claims    map[string]string // latest claims; replaced, never modified
	claimsGen uint64            // bumped whenever claims is replaced by a Login
	storedGen uint64            // claimsGen as of the last successful flush
}

// creation is a first Login in flight; later Logins of the same key wait
// for it instead of asking etcd again.
type creation struct {
	done chan struct{}
	err  error // set before done is closed
}

// Open returns a store on the etcd cluster at opts.Endpoints and starts
// loading its users in the background, retrying until etcd answers; Ready
// reports when it did. It fails only on unusable options. Close releases
// the store.
func Open(opts Options) (*Store, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("open etcd store: no endpoints")
	}
	if (opts.Username == "") != (opts.Password == "") {
		return nil, errors.New("open etcd store: username and password go together")
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultPrefix
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequestTimeout
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = defaultFlushInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		opts:        opts,
		log:         opts.Logger,
		usersPrefix: opts.Prefix + usersDir,
		idsPrefix:   opts.Prefix + idsDir,
		lastIDKey:   opts.Prefix + lastIDKey,
		seed:        maphash.MakeSeed(),
		loaded:      make(chan struct{}),
		createSem:   make(chan struct{}, 1),
		ctx:         ctx,
		cancel:      cancel,
		stopFlush:   make(chan struct{}),
		flushDone:   make(chan struct{}),
	}
	for i := range s.shards {
		s.shards[i].users = make(map[string]*user)
		s.shards[i].creating = make(map[string]*creation)
	}
	s.wg.Add(1)
	go s.run()
	go s.flushLoop()
	return s, nil
}

// Ready reports whether the users were loaded from etcd. It stays true
// once they were, also while etcd is unreachable later.
func (s *Store) Ready() bool {
	select {
	case <-s.loaded:
		return true
	default:
		return false
	}
}

// WaitReady waits until the users were loaded from etcd, or ctx ends.
func (s *Store) WaitReady(ctx context.Context) error {
	select {
	case <-s.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for etcd store: %w", ctx.Err())
	}
}

// Close stops the write-behind loop, flushes the pending state, stops
// following etcd and closes the client. Later calls return the first
// call's result.
//
// Logins that race with Close may be counted in memory after the final
// flush; stop serving Checks before closing the store.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stopFlush)
		<-s.flushDone
		err := s.Flush()
		s.cancel()
		s.wg.Wait()
		if s.cli != nil {
			// Closing cancels the client's watch streams, which reports
			// context.Canceled: that is how it is meant to end.
			if cerr := s.cli.Close(); cerr != nil && !errors.Is(cerr, context.Canceled) {
				err = errors.Join(err, cerr)
			}
		}
		if err != nil {
			s.closeErr = fmt.Errorf("close etcd store: %w", err)
		}
	})
	return s.closeErr
}

// run connects, loads the users and follows the watch until Close.
func (s *Store) run() {
	defer s.wg.Done()
	rev, ok := s.connectAndLoad()
	if !ok {
		return // closed before etcd was reached
	}
	close(s.loaded)
	s.follow(rev)
}

// retryDelay is a capped exponential backoff.
type retryDelay struct{ d time.Duration }

func (r *retryDelay) next() time.Duration {
	switch {
	case r.d == 0:
		r.d = 50 * time.Millisecond
	case r.d < maxRetryDelay:
		r.d = min(2*r.d, maxRetryDelay)
	}
	return r.d
}

func (r *retryDelay) reset() { r.d = 0 }

// sleep waits d or until Close; it reports whether the store is still open.
func (s *Store) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// connectAndLoad makes the client and loads every user, retrying until it
// succeeds or the store closes. It returns the revision of the load.
func (s *Store) connectAndLoad() (rev int64, ok bool) {
	var delay retryDelay
	for attempt := 1; ; attempt++ {
		err := s.connect()
		if err == nil {
			var n int
			if rev, n, err = s.load(); err == nil {
				s.log.Info("users loaded from etcd", "users", n, "revision", rev, "endpoints", s.opts.Endpoints, "prefix", s.opts.Prefix)
				return rev, true
			}
		}
		if s.ctx.Err() != nil {
			return 0, false
		}
		// Warn on the first failure and now and then after, not every try.
		if attempt == 1 || attempt%30 == 0 {
			s.log.Warn("etcd store not loaded yet; retrying", "attempt", attempt, "endpoints", s.opts.Endpoints, "err", err)
		}
		if !s.sleep(delay.next()) {
			return 0, false
		}
	}
}

// connect makes the client once. It only fails when authentication is on,
// since that needs an answer from etcd.
func (s *Store) connect() error {
	if s.cli != nil {
		return nil
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   s.opts.Endpoints,
		DialTimeout: s.opts.DialTimeout,
		TLS:         s.opts.TLS,
		Username:    s.opts.Username,
		Password:    s.opts.Password,
		// Notice a connection that silently died, so the watch moves on.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Context:              s.ctx,
		Logger:               zap.NewNop(), // errors reach s.log through the store
		DialOptions: []grpc.DialOption{
			// gRPC's default waits up to 2 minutes between reconnects; a
			// restarted etcd should be used again within seconds.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxRetryDelay},
				MinConnectTimeout: s.opts.DialTimeout,
			}),
		},
	})
	if err != nil {
		return fmt.Errorf("connect to etcd %v: %w", s.opts.Endpoints, err)
	}
	s.cli = cli
	return nil
}

// load reads every user into memory, page by page at one revision, and
// drops from memory the users that are no longer stored. It returns that
// revision and the number of users read.
func (s *Store) load() (rev int64, n int, err error) {
	end := clientv3.GetPrefixRangeEnd(s.usersPrefix)
	from := s.usersPrefix
	seen := make(map[string]bool)
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.RequestTimeout)
		ops := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			ops = append(ops, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, ops...)
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("load users: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			key := string(kv.Key[len(s.usersPrefix):])
			seen[key] = true
			s.applyPut(key, kv.Value, kv.ModRevision)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for key, u := range sh.users {
			if !seen[key] && u.rev <= rev {
				delete(sh.users, key)
			}
		}
		sh.mu.Unlock()
	}
	return rev, len(seen), nil
}

// follow applies the watch on the users from revision rev+1 until Close.
// A broken watch resumes from the last revision applied; a compacted one
// reloads everything.
func (s *Store) follow(rev int64) {
	var delay retryDelay
	for {
		// WithRequireLeader ends the watch when its etcd member loses the
		// cluster's leader, instead of waiting silently on a partitioned one.
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(s.ctx))
		wch := s.cli.Watch(ctx, s.usersPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
		var err error
		compacted := false
		for resp := range wch {
			if resp.CompactRevision != 0 {
				compacted = true
				break
			}
			if err = resp.Err(); err != nil {
				break
			}
			for _, ev := range resp.Events {
				s.applyEvent(ev)
				rev = ev.Kv.ModRevision
			}
			if resp.IsProgressNotify() && resp.Header.Revision > rev {
				rev = resp.Header.Revision
			}
			delay.reset()
		}
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		if compacted {
			s.log.Warn("etcd watch fell behind a compaction; reloading every user", "revision", rev)
			var ok bool
			if rev, ok = s.reload(); !ok {
				return
			}
			continue
		}
		s.log.Warn("etcd watch lost; resuming", "revision", rev, "err", err)
		if !s.sleep(delay.next()) {
			return
		}
	}
}

// reload loads every user again, retrying until it succeeds or Close.
func (s *Store) reload() (rev int64, ok bool) {
	var delay retryDelay
	for {
		rev, n, err := s.load()
		if err == nil {
			s.log.Info("users reloaded from etcd", "users", n, "revision", rev)
			return rev, true
		}
		s.log.Warn("reload users from etcd", "err", err)
		if !s.sleep(delay.next()) {
			return 0, false
		}
	}
}

// applyEvent applies one watched change to memory.
func (s *Store) applyEvent(ev *clientv3.Event) {
	key := string(ev.Kv.Key[len(s.usersPrefix):])
	if ev.Type == clientv3.EventTypeDelete {
		sh := s.shardFor(key)
		sh.mu.Lock()
		if u := sh.users[key]; u != nil && u.rev < ev.Kv.ModRevision {
			delete(sh.users, key)
		}
		sh.mu.Unlock()
		return
	}
	s.applyPut(key, ev.Kv.Value, ev.Kv.ModRevision)
}

// applyPut decodes a stored record and applies it to memory.
func (s *Store) applyPut(key string, v []byte, rev int64) {
	var rec adminv1.User
	if err := proto.Unmarshal(v, &rec); err != nil {
		// One bad record must not keep every other user out; its user's
		// Logins fail until it is repaired.
		s.log.Error("undecodable user record in etcd; skipped", "key", s.usersPrefix+key, "err", err)
		return
	}
	s.apply(key, &rec, rev)
}

// apply puts the id, active flag and stored claims of rec, the record of
// key as of revision rev, in memory, unless memory already holds a later
// revision. The pending write-behind state is kept.
func (s *Store) apply(key string, rec *adminv1.User, rev int64) {
	sh := s.shardFor(key)
	sh.mu.Lock()
	sh.apply(key, rec, rev)
	sh.mu.Unlock()
}

// apply is Store.apply with sh.mu held; it returns the user in memory.
func (sh *shard) apply(key string, rec *adminv1.User, rev int64) *user {
	u := sh.users[key]
	if u == nil {
		u = &user{key: key, id: rec.GetId(), active: rec.GetActive(), rev: rev, claims: rec.GetClaims()}
		sh.users[key] = u
		return u
	}
	if rev <= u.rev {
		return u
	}
	u.id, u.active, u.rev = rec.GetId(), rec.GetActive(), rev
	if u.claimsGen == u.storedGen {
		// No claims of this replica wait to be written: compare the next
		// Login's claims with what is stored now.
		u.claims = rec.GetClaims()
	}
	return u
}

// shardFor returns the shard that holds key.
func (s *Store) shardFor(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)&(numShards-1)]
}

// shardForBytes is shardFor without converting key to a string; the two
// hash alike.
func (s *Store) shardForBytes(key []byte) *shard {
	return &s.shards[maphash.Bytes(s.seed, key)&(numShards-1)]
}

// begin checks that the store can ask etcd now and returns the context of
// one request.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, store.ErrClosed
	}
	if !s.Ready() {
		return nil, nil, fmt.Errorf("users not loaded from etcd yet: %w", ErrUnavailable)
	}
	if err := s.reachable(); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	return ctx, cancel, nil
}

// reachable fails fast when the client failed to connect to every
// endpoint lately, rather than letting a request wait for its deadline: a
// Check that must create a user is answered 503 at once, while Envoy still
// waits for the answer.
func (s *Store) reachable() error {
	if s.cli.ActiveConnection().GetState() == connectivity.TransientFailure {
		return fmt.Errorf("no etcd endpoint of %v reachable: %w", s.opts.Endpoints, ErrUnavailable)
	}
	return nil
}
