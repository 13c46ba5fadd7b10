package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

const (
	defaultFlushInterval = time.Second

	// numShards splits the in-memory users so that concurrent Logins of
	// different users rarely wait on the same mutex. A power of two.
	numShards = 64

	// keyBufSize covers the keys of ordinary names without a heap
	// allocation.
	keyBufSize = 128

	// maxBatch bounds the new users one commit carries.
	maxBatch = 512
)

// Options configure an Engine.
type Options struct {
	// FlushInterval is the write-behind period for last_login,
	// login_count and claims of known users. Zero means 1s.
	FlushInterval time.Duration
	// Logger receives write-behind trouble; nil discards it.
	Logger *slog.Logger
}

// Engine is a user store: a Backend with the in-memory state that lets the
// Check path serve known users from memory. Its methods are safe for
// concurrent use.
//
// New users are committed in groups: one committer writes every creation
// queued while the previous commit ran, so a lone first Login costs one
// commit and throughput grows with concurrency. Known users' last_login,
// login_count and claims are kept in memory and written behind every
// FlushInterval, and on Close.
type Engine struct {
	b      Backend
	log    *slog.Logger
	seed   maphash.Seed
	shards [numShards]shard

	// flushMu keeps a flush from moving pending state to the backend while
	// a reader adds that state to records it read, which would count it
	// twice.
	flushMu sync.RWMutex

	qmu     sync.Mutex
	queue   []*creation // waiting for the committer
	stopped bool        // the committer is gone: no more creations
	wake    chan struct{}

	closed    atomic.Bool
	stop      chan struct{}
	loops     sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// shard is one part of the in-memory users.
type shard struct {
	mu       sync.Mutex
	users    map[string]*user     // by key (appendKey)
	creating map[string]*creation // first Logins whose record is being written
	dirty    []*user              // users with pending write-behind state

	_ [64]byte // keeps neighbouring shards' mutexes off one cache line
}

// user is the hot state of one stored user, guarded by its shard's mutex.
type user struct {
	key    string
	id     uint64
	active bool
	rev    int64 // revision of the record id and active came from

	dirty     bool              // queued in shard.dirty
	last      time.Time         // latest Login.At not yet stored; zero if none
	count     uint64            // Logins not yet added to the stored login_count
	claims    map[string]string // latest claims; replaced, never modified
	claimsGen uint64            // bumped whenever a Login replaces claims
	storedGen uint64            // claimsGen as of the last successful flush
}

// creation is a first Login in flight; later Logins of the same key wait
// for it instead of writing a second record.
type creation struct {
	key   string
	login Login
	done  chan struct{}
	id    Identity // set before done is closed
	err   error    // set before done is closed
}

// New returns an Engine over b and starts its committer and write-behind
// loop. The backend may Apply records (its users as loaded) at once.
// Close stops them and closes b.
func New(b Backend, opts Options) *Engine {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = defaultFlushInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		b:    b,
		log:  opts.Logger,
		seed: maphash.MakeSeed(),
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	for i := range e.shards {
		e.shards[i].users = make(map[string]*user)
		e.shards[i].creating = make(map[string]*creation)
	}
	e.loops.Add(2)
	go e.commitLoop()
	go e.flushLoop(opts.FlushInterval)
	return e
}

// Ready reports whether the backend has been reached, for health: a
// backend that loads its users in the background says so with a Ready
// method; others are ready once open.
func (e *Engine) Ready() bool {
	if r, ok := e.b.(interface{ Ready() bool }); ok {
		return r.Ready()
	}
	return true
}

// Login records a successful authentication and returns the user's
// identity.
//
// A known user is served from memory: an inactive one gets
// Identity{Active: false} and nothing is recorded; an active one has
// last_login and login_count updated in memory, written behind. An unknown
// user is created, active, and written durably before Login returns;
// concurrent first Logins of one user share that write, and exactly one of
// them gets New set. A failed write is returned as an error wrapping its
// cause; a later Login tries again.
func (e *Engine) Login(ctx context.Context, l Login) (Identity, error) {
	var buf [keyBufSize]byte
	k := appendKey(buf[:0], l.Provider, l.Username)
	s := e.shardFor(k)
	for {
		if e.closed.Load() {
			return Identity{}, errorf("login", l.Provider, l.Username, ErrClosed)
		}
		s.mu.Lock()
		if u := s.users[string(k)]; u != nil {
			id := s.login(u, &l)
			s.mu.Unlock()
			return id, nil
		}
		c := s.creating[string(k)]
		if c == nil {
			break // with s.mu held: this Login creates the user
		}
		s.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return Identity{}, errorf("login", l.Provider, l.Username, ctx.Err())
		}
		if c.err != nil {
			return Identity{}, c.err
		}
		// The user is in memory now: count this Login like any other.
	}

	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return Identity{}, errorf("login", l.Provider, l.Username, err)
	}
	c := &creation{key: string(k), login: l, done: make(chan struct{})}
	s.creating[c.key] = c
	s.mu.Unlock()

	e.enqueue(c)
	// The commit goes on if this Login gives up: others may be waiting on
	// it, and the user exists either way.
	select {
	case <-c.done:
	case <-ctx.Done():
		return Identity{}, errorf("login", l.Provider, l.Username, ctx.Err())
	}
	return c.id, c.err
}

// login records l for the known user u; s.mu must be held. It does not
// allocate unless the claims changed or the dirty list grows.
func (s *shard) login(u *user, l *Login) Identity {
	if !u.active {
		return Identity{ID: u.id}
	}
	u.count++
	if l.At.After(u.last) {
		u.last = l.At
	}
	if !maps.Equal(u.claims, l.Claims) {
		u.claims = l.Claims // never modified: see Login.Claims
		u.claimsGen++
	}
	if !u.dirty {
		u.dirty = true
		s.dirty = append(s.dirty, u)
	}
	return Identity{ID: u.id, Active: true}
}

// enqueue hands c to the committer, or fails it when the committer has
// stopped.
func (e *Engine) enqueue(c *creation) {
	e.qmu.Lock()
	if e.stopped {
		e.qmu.Unlock()
		e.finish(c, Created{}, ErrClosed)
		return
	}
	e.queue = append(e.queue, c)
	e.qmu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default: // the committer is already told
	}
}

// commitLoop commits queued creations, each commit starting as soon as the
// previous one ended, with everything queued meanwhile. On Close it commits
// what is queued and stops.
func (e *Engine) commitLoop() {
	defer e.loops.Done()
	for {
		var stopping bool
		select {
		case <-e.wake:
		case <-e.stop:
			stopping = true
		}
		for {
			e.qmu.Lock()
			n := min(len(e.queue), maxBatch)
			batch := e.queue[:n:n]
			e.queue = e.queue[n:]
			if len(e.queue) == 0 {
				e.queue = nil
				e.stopped = stopping
			}
			e.qmu.Unlock()
			if n == 0 {
				break
			}
			e.commit(batch)
		}
		if stopping {
			return
		}
	}
}

// commit writes one batch of new users and answers their Logins.
func (e *Engine) commit(batch []*creation) {
	recs := make([]*adminv1.User, len(batch))
	for i, c := range batch {
		recs[i] = newRecord(&c.login)
	}
	res, err := e.b.Create(context.Background(), recs)
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("backend answered %d of %d creations", len(res), len(batch))
	}
	for i, c := range batch {
		if err != nil {
			e.finish(c, Created{}, err)
			continue
		}
		e.finish(c, res[i], res[i].Err)
	}
}

// finish puts a committed user in memory and answers the Logins waiting
// for it.
func (e *Engine) finish(c *creation, cr Created, err error) {
	s := e.shardForString(c.key)
	s.mu.Lock()
	delete(s.creating, c.key)
	switch {
	case err != nil:
		c.err = errorf("create", c.login.Provider, c.login.Username, err)
	case cr.New:
		u := s.apply(c.key, cr.User, cr.Rev)
		c.id = Identity{ID: u.id, Active: true, New: true}
	default:
		// Another writer (a replica, or an earlier Login whose answer was
		// lost) stored the record first: this is an ordinary Login of it.
		c.id = s.login(s.apply(c.key, cr.User, cr.Rev), &c.login)
	}
	s.mu.Unlock()
	close(c.done)
}

// Apply puts the id, active flag and stored claims of rec, a record as of
// revision rev, in memory, unless memory holds a later revision of it. The
// pending write-behind state is kept. Backends call it with the users they
// load, and etcd with every change its watch sees.
func (e *Engine) Apply(rec *adminv1.User, rev int64) {
	var buf [keyBufSize]byte
	k := appendKey(buf[:0], rec.GetProvider(), rec.GetUsername())
	s := e.shardFor(k)
	s.mu.Lock()
	s.apply(string(k), rec, rev)
	s.mu.Unlock()
}

// apply is Engine.Apply with s.mu held; it returns the user in memory.
func (s *shard) apply(key string, rec *adminv1.User, rev int64) *user {
	u := s.users[key]
	if u == nil {
		u = &user{key: key, id: rec.GetId(), active: rec.GetActive(), rev: rev, claims: rec.GetClaims()}
		s.users[key] = u
		return u
	}
	if rev < u.rev {
		return u
	}
	u.id, u.active, u.rev = rec.GetId(), rec.GetActive(), rev
	if u.claimsGen == u.storedGen {
		// No claims of this process wait to be written: compare the next
		// Login's claims with what is stored now.
		u.claims = rec.GetClaims()
	}
	return u
}

// Remove forgets a user whose record was deleted at revision rev, unless
// memory holds a later revision of it.
func (e *Engine) Remove(provider, username string, rev int64) {
	var buf [keyBufSize]byte
	k := appendKey(buf[:0], provider, username)
	s := e.shardFor(k)
	s.mu.Lock()
	if u := s.users[string(k)]; u != nil && u.rev < rev {
		delete(s.users, string(k))
	}
	s.mu.Unlock()
}

// Prune forgets every user that keep refuses and whose memory is not
// later than revision rev: after a backend reloaded every record as of
// rev, the users it did not see are no longer stored.
func (e *Engine) Prune(keep func(provider, username string) bool, rev int64) {
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for key, u := range s.users {
			if p, n := splitKey(key); u.rev <= rev && !keep(p, n) {
				delete(s.users, key)
			}
		}
		s.mu.Unlock()
	}
}

// User returns the user with the given key, including the last_login,
// login_count and claims not yet written behind. It returns an error
// wrapping ErrNotFound when there is no such user.
func (e *Engine) User(ctx context.Context, provider, username string) (*adminv1.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, errorf("get", provider, username, err)
	}
	e.flushMu.RLock()
	defer e.flushMu.RUnlock()
	rec, err := e.b.Get(ctx, provider, username)
	if err != nil {
		return nil, errorf("get", provider, username, err)
	}
	e.addPending(rec)
	return rec, nil
}

// List returns up to limit users with ids above afterID, ordered by id,
// including the state not yet written behind. A non-empty provider keeps
// only that provider's users. A limit <= 0 means no limit.
//
// Ids only grow, and a user becomes visible with all smaller ids already
// visible, so paging by the last id seen neither skips nor repeats a user
// while others are being created.
func (e *Engine) List(ctx context.Context, provider string, afterID uint64, limit int) ([]*adminv1.User, error) {
	if afterID == math.MaxUint64 {
		return nil, nil
	}
	e.flushMu.RLock()
	defer e.flushMu.RUnlock()
	recs, err := e.b.List(ctx, provider, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list users of provider %q after id %d: %w", provider, afterID, err)
	}
	for _, rec := range recs {
		e.addPending(rec)
	}
	return recs, nil
}

// SetActive activates or deactivates a user and returns it. The change is
// durable before SetActive returns, and this process's next Login sees it.
// It returns an error wrapping ErrNotFound when there is no such user.
func (e *Engine) SetActive(ctx context.Context, provider, username string, active bool) (*adminv1.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, errorf("set active", provider, username, err)
	}
	e.flushMu.RLock()
	defer e.flushMu.RUnlock()
	rec, rev, err := e.b.SetActive(ctx, provider, username, active)
	if err != nil {
		return nil, errorf("set active", provider, username, err)
	}
	// Memory at once, so the next Login is denied; the revision keeps an
	// older change that lands later (a creation, a watch event) from
	// undoing it.
	e.Apply(rec, rev)
	e.addPending(rec)
	return rec, nil
}

// addPending adds the in-memory state not yet written behind to rec.
// e.flushMu must be held, so that no flush moves it to the backend
// meanwhile.
func (e *Engine) addPending(rec *adminv1.User) {
	var buf [keyBufSize]byte
	k := appendKey(buf[:0], rec.GetProvider(), rec.GetUsername())
	s := e.shardFor(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[string(k)]
	if u == nil {
		return
	}
	p := Pending{Last: u.last, Count: u.count, ClaimsChanged: u.claimsGen != u.storedGen}
	if p.ClaimsChanged {
		p.Claims = maps.Clone(u.claims)
	}
	p.Apply(rec)
}

// flushLoop flushes the write-behind state every interval until Close.
func (e *Engine) flushLoop(interval time.Duration) {
	defer e.loops.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		// A failure repeats every tick while the backend is away: log the
		// change, not every tick.
		switch err := e.Flush(); {
		case err != nil && !failing:
			// The pending state is kept for the next tick; an operator
			// must look if this lasts, since it is lost on a crash.
			e.log.Error("store write-behind failing; keeping the state in memory", "err", err)
			failing = true
		case err == nil && failing:
			e.log.Info("store write-behind recovered")
			failing = false
		}
	}
}

// Flush writes the pending last_login, login_count and claims of every
// user now. What the backend could not write stays pending for the next
// Flush.
func (e *Engine) Flush() error {
	e.flushMu.Lock()
	defer e.flushMu.Unlock()

	var ps []Pending
	for i := range e.shards {
		s := &e.shards[i]
		s.mu.Lock()
		for _, u := range s.dirty {
			u.dirty = false
			provider, username := splitKey(u.key)
			ps = append(ps, Pending{
				Provider:      provider,
				Username:      username,
				Last:          u.last,
				Count:         u.count,
				Claims:        u.claims,
				ClaimsChanged: u.claimsGen != u.storedGen,
				u:             u,
				s:             s,
				claimsGen:     u.claimsGen,
			})
		}
		clear(s.dirty)
		s.dirty = s.dirty[:0]
		s.mu.Unlock()
	}
	if len(ps) == 0 {
		return nil
	}

	written, err := e.b.Write(context.Background(), ps)
	fe := &FlushError{Users: len(ps) - written, Err: err}
	for i := range ps {
		p := &ps[i]
		p.s.mu.Lock()
		u := p.u
		if i >= written {
			if !u.dirty {
				u.dirty = true
				p.s.dirty = append(p.s.dirty, u)
			}
			fe.Logins += p.Count
		} else {
			// Logins during the flush added to the pending state; keep
			// only what they added.
			u.count -= p.Count
			if !u.last.After(p.Last) {
				u.last = time.Time{}
			}
			if p.ClaimsChanged {
				u.storedGen = p.claimsGen
			}
		}
		p.s.mu.Unlock()
	}
	if err != nil {
		return fe
	}
	return nil
}

// FlushError is a flush that left users' write-behind state unwritten; it
// stays pending for the next flush. At Close, what it counts is lost.
type FlushError struct {
	Users  int    // users whose state was not written
	Logins uint64 // logins not added to their login_count
	Err    error
}

func (e *FlushError) Error() string {
	return fmt.Sprintf("flush %d users (%d logins): %v", e.Users, e.Logins, e.Err)
}

func (e *FlushError) Unwrap() error { return e.Err }

// Close stops the committer (after it committed what was queued) and the
// write-behind loop, flushes the pending state and closes the backend.
// When only the final flush failed, the error is that *FlushError, which
// counts what was lost. Later calls return the first call's result.
//
// Logins that race with Close may be counted in memory after the final
// flush; stop serving Checks before closing the store.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		close(e.stop)
		e.loops.Wait()
		flushErr, closeErr := e.Flush(), e.b.Close()
		switch {
		case closeErr != nil:
			e.closeErr = fmt.Errorf("close store: %w", errors.Join(flushErr, closeErr))
		case flushErr != nil:
			e.closeErr = flushErr // a *FlushError: what was lost
		}
	})
	return e.closeErr
}

// appendKey appends the in-memory key of (provider, username) to dst: the
// length of provider as a uvarint, provider, then username, so the key of
// any pair of byte strings is unambiguous.
func appendKey(dst []byte, provider, username string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(provider)))
	dst = append(dst, provider...)
	return append(dst, username...)
}

// splitKey is the inverse of appendKey; the results share key's memory.
func splitKey(key string) (provider, username string) {
	n, w := binary.Uvarint([]byte(key[:min(len(key), binary.MaxVarintLen64)]))
	rest := key[w:]
	return rest[:n], rest[n:]
}

// shardFor returns the shard that holds key.
func (e *Engine) shardFor(key []byte) *shard {
	return &e.shards[maphash.Bytes(e.seed, key)&(numShards-1)]
}

// shardForString is shardFor for a key held as a string; the two agree.
func (e *Engine) shardForString(key string) *shard {
	return &e.shards[maphash.String(e.seed, key)&(numShards-1)]
}

// errorf wraps err with the operation and the user it was about.
func errorf(op, provider, username string, err error) error {
	return fmt.Errorf("%s user %q of provider %q: %w", op, username, provider, err)
}
