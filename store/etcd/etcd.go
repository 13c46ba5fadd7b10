// Package etcd keeps jwtauthz's users in etcd, so that several replicas
// of jwtauthz share one user registry.
//
// It is a store.Backend: the shared store.Engine serves Logins from memory
// and does the write-behind; this package supplies the durable creation,
// the writes, and the watch that keeps the memory current. A user is
// keyed by (provider, username) and stored as an adminv1.User, proto-binary-encoded;
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
	"log/slog"
	"sync"
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

// Store is a user store on etcd: the shared store.Engine over this
// package's backend. Its methods are safe for concurrent use.
type Store struct {
	*store.Engine
	b *backend
}

// backend is the store.Backend on etcd, with the loader and the watch that
// keep the Engine's memory current.
type backend struct {
	opts        Options
	log         *slog.Logger
	usersPrefix string // Prefix + "users/"
	idsPrefix   string // Prefix + "ids/"
	lastIDKey   string // Prefix + "last-id"
	engine      *store.Engine

	// cli is set by the loader before loaded is closed; read it only after.
	cli    *clientv3.Client
	loaded chan struct{}

	// lastID and lastIDRev are the id counter as last seen. Only Create
	// uses them, and the Engine never runs two Creates at once.
	lastID    uint64
	lastIDRev int64

	ctx    context.Context // ends at Close; stops the loader and the watch
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loader and watch goroutine
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
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &backend{
		opts:        opts,
		log:         opts.Logger,
		usersPrefix: opts.Prefix + usersDir,
		idsPrefix:   opts.Prefix + idsDir,
		lastIDKey:   opts.Prefix + lastIDKey,
		loaded:      make(chan struct{}),
		ctx:         ctx,
		cancel:      cancel,
	}
	b.engine = store.New(b, store.Options{FlushInterval: opts.FlushInterval, Logger: opts.Logger})
	b.wg.Add(1)
	go b.run()
	return &Store{Engine: b.engine, b: b}, nil
}

// Ready reports whether the users were loaded from etcd. It stays true
// once they were, also while etcd is unreachable later.
func (b *backend) Ready() bool {
	select {
	case <-b.loaded:
		return true
	default:
		return false
	}
}

// WaitReady waits until the users were loaded from etcd, or ctx ends.
func (s *Store) WaitReady(ctx context.Context) error {
	select {
	case <-s.b.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for etcd store: %w", ctx.Err())
	}
}

// Close stops following etcd and closes the client; the Engine calls it
// after its last write.
func (b *backend) Close() error {
	b.cancel()
	b.wg.Wait()
	if b.cli == nil {
		return nil
	}
	// Closing cancels the client's watch streams, which reports
	// context.Canceled: that is how it is meant to end.
	if err := b.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// run connects, loads the users and follows the watch until Close.
func (b *backend) run() {
	defer b.wg.Done()
	rev, ok := b.connectAndLoad()
	if !ok {
		return // closed before etcd was reached
	}
	close(b.loaded)
	b.follow(rev)
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
func (b *backend) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}

// connectAndLoad makes the client and loads every user, retrying until it
// succeeds or the store closes. It returns the revision of the load.
func (b *backend) connectAndLoad() (rev int64, ok bool) {
	var delay retryDelay
	for attempt := 1; ; attempt++ {
		err := b.connect()
		if err == nil {
			var n int
			if rev, n, err = b.load(); err == nil {
				b.log.Info("users loaded from etcd", "users", n, "revision", rev, "endpoints", b.opts.Endpoints, "prefix", b.opts.Prefix)
				return rev, true
			}
		}
		if b.ctx.Err() != nil {
			return 0, false
		}
		// Warn on the first failure and now and then after, not every try.
		if attempt == 1 || attempt%30 == 0 {
			b.log.Warn("etcd store not loaded yet; retrying", "attempt", attempt, "endpoints", b.opts.Endpoints, "err", err)
		}
		if !b.sleep(delay.next()) {
			return 0, false
		}
	}
}

// connect makes the client once. It only fails when authentication is on,
// since that needs an answer from etcd.
func (b *backend) connect() error {
	if b.cli != nil {
		return nil
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   b.opts.Endpoints,
		DialTimeout: b.opts.DialTimeout,
		TLS:         b.opts.TLS,
		Username:    b.opts.Username,
		Password:    b.opts.Password,
		// Notice a connection that silently died, so the watch moves on.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Context:              b.ctx,
		Logger:               zap.NewNop(), // errors reach b.log through the store
		DialOptions: []grpc.DialOption{
			// gRPC's default waits up to 2 minutes between reconnects; a
			// restarted etcd should be used again within seconds.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxRetryDelay},
				MinConnectTimeout: b.opts.DialTimeout,
			}),
		},
	})
	if err != nil {
		return fmt.Errorf("connect to etcd %v: %w", b.opts.Endpoints, err)
	}
	b.cli = cli
	return nil
}

// load reads every user into memory, page by page at one revision, and
// drops from memory the users that are no longer stored. It returns that
// revision and the number of users read.
func (b *backend) load() (rev int64, n int, err error) {
	end := clientv3.GetPrefixRangeEnd(b.usersPrefix)
	from := b.usersPrefix
	type name struct{ provider, username string }
	seen := make(map[name]bool)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.RequestTimeout)
		ops := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(loadPage)}
		if rev != 0 {
			ops = append(ops, clientv3.WithRev(rev))
		}
		resp, err := b.cli.Get(ctx, from, ops...)
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("load users: %w", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if rec := b.applyPut(kv.Key, kv.Value, kv.ModRevision); rec != nil {
				seen[name{rec.GetProvider(), rec.GetUsername()}] = true
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	b.engine.Prune(func(provider, username string) bool { return seen[name{provider, username}] }, rev)
	return rev, len(seen), nil
}

// follow applies the watch on the users from revision rev+1 until Close.
// A broken watch resumes from the last revision applied; a compacted one
// reloads everything.
func (b *backend) follow(rev int64) {
	var delay retryDelay
	for {
		// WithRequireLeader ends the watch when its etcd member loses the
		// cluster's leader, instead of waiting silently on a partitioned one.
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(b.ctx))
		wch := b.cli.Watch(ctx, b.usersPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
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
				b.applyEvent(ev)
				rev = ev.Kv.ModRevision
			}
			if resp.IsProgressNotify() && resp.Header.Revision > rev {
				rev = resp.Header.Revision
			}
			delay.reset()
		}
		cancel()
		if b.ctx.Err() != nil {
			return
		}
		if compacted {
			b.log.Warn("etcd watch fell behind a compaction; reloading every user", "revision", rev)
			var ok bool
			if rev, ok = b.reload(); !ok {
				return
			}
			continue
		}
		b.log.Warn("etcd watch lost; resuming", "revision", rev, "err", err)
		if !b.sleep(delay.next()) {
			return
		}
	}
}

// reload loads every user again, retrying until it succeeds or Close.
func (b *backend) reload() (rev int64, ok bool) {
	var delay retryDelay
	for {
		rev, n, err := b.load()
		if err == nil {
			b.log.Info("users reloaded from etcd", "users", n, "revision", rev)
			return rev, true
		}
		b.log.Warn("reload users from etcd", "err", err)
		if !b.sleep(delay.next()) {
			return 0, false
		}
	}
}

// applyEvent applies one watched change to memory.
func (b *backend) applyEvent(ev *clientv3.Event) {
	if ev.Type == clientv3.EventTypeDelete {
		provider, username, err := parseUserKey(ev.Kv.Key[len(b.usersPrefix):])
		if err != nil {
			b.log.Error("user key in etcd not understood; skipped", "key", string(ev.Kv.Key), "err", err)
			return
		}
		b.engine.Remove(provider, username, ev.Kv.ModRevision)
		return
	}
	b.applyPut(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
}

// applyPut decodes a stored record and applies it to memory. It returns
// the record, or nil when it could not be decoded.
func (b *backend) applyPut(key, v []byte, rev int64) *adminv1.User {
	var rec adminv1.User
	if err := proto.Unmarshal(v, &rec); err != nil {
		// One bad record must not keep every other user out; its user's
		// Logins fail until it is repaired.
		b.log.Error("undecodable user record in etcd; skipped", "key", string(key), "err", err)
		return nil
	}
	b.engine.Apply(&rec, rev)
	return &rec
}

// begin checks that the store can ask etcd now and returns the context of
// one request.
func (b *backend) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if !b.Ready() {
		return nil, nil, fmt.Errorf("users not loaded from etcd yet: %w", ErrUnavailable)
	}
	if err := b.reachable(); err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.RequestTimeout)
	return ctx, cancel, nil
}

// reachable fails fast when the client failed to connect to every
// endpoint lately, rather than letting a request wait for its deadline: a
// Check that must create a user is answered 503 at once, while Envoy still
// waits for the answer.
func (b *backend) reachable() error {
	if b.cli.ActiveConnection().GetState() == connectivity.TransientFailure {
		return fmt.Errorf("no etcd endpoint of %v reachable: %w", b.opts.Endpoints, ErrUnavailable)
	}
	return nil
}
