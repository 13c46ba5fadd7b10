package keys

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"
)

// Defaults of RemoteOptions.
const (
	DefaultRefreshInterval  = time.Hour
	DefaultHTTPTimeout      = 5 * time.Second
	DefaultUnknownKIDBurst  = 5
	DefaultUnknownKIDRefill = 10 * time.Second
	DefaultUnknownKIDMemory = time.Second
	DefaultRetryInterval    = time.Second
	// MaxRetryInterval caps the backoff after failed fetches (and
	// RefreshInterval caps it further), so a failing endpoint is retried,
	// and its failure counted, at least once a minute.
	MaxRetryInterval = time.Minute
)

// maxSoughtKIDs bounds the memory of kids recently looked for. Entries
// expire after UnknownKIDMemory; a flood of distinct kids only evicts
// entries early, and the token bucket still bounds the fetches.
const maxSoughtKIDs = 1024

// RemoteOptions configure a Remote source. Exactly one of URL and
// DiscoveryIssuer is set.
type RemoteOptions struct {
	URL string // the JWK Set's URL
	// DiscoveryIssuer, when set, is an OpenID Connect issuer: each refresh
	// reads {DiscoveryIssuer without a trailing "/"}/.well-known/openid-configuration,
	// requires its issuer to equal DiscoveryIssuer exactly, and fetches the
	// JWK Set at its jwks_uri.
	DiscoveryIssuer string
	// Static keys (PEM files, a JWKS file, an HMAC secret) are part of every
	// snapshot, so a provider with both is usable before the first fetch.
	Static          []Key
	RefreshInterval time.Duration // periodic refresh; default 1h
	HTTPTimeout     time.Duration // one refresh (discovery and JWK Set); default 5s
	// Tokens whose kid the set lacks trigger refreshes through a token
	// bucket of UnknownKIDBurst (default 5) refilled by one every
	// UnknownKIDRefill (default 10s). A failed fetch empties the bucket.
	UnknownKIDBurst  int
	UnknownKIDRefill time.Duration
	// UnknownKIDMemory is how long a kid that was just looked for is
	// answered "unknown" at once, without another fetch; default 1s.
	UnknownKIDMemory time.Duration
	// RetryInterval is the first delay before retrying a failed periodic
	// fetch, whether or not keys were loaded before; it doubles up to
	// min(RefreshInterval, MaxRetryInterval). Default 1s.
	RetryInterval time.Duration
	Client        *http.Client // default: a client with HTTPTimeout
	// Tracer makes a span of every fetch, a child of the Check whose
	// unknown kid started it; default: no spans.
	Tracer trace.Tracer
	Logger *slog.Logger
	// OnRefresh, when set, is called after every fetch with its outcome:
	// nil for a new set, an unchanged one, or a 304 Not Modified.
	OnRefresh func(err error)
	// Seed, when set, is a source of the same URL (or discovery issuer)
	// that this one replaces, as a reload does when a provider's refresh
	// interval or static keys change: this one starts with the keys Seed
	// last fetched (beside its own Static) and Seed's validators, and
	// counts as loaded, so that it needs no fetch to begin with.
	Seed *Remote
}

// Remote is a JWK Set fetched over HTTP(S) and refreshed in the background.
// A failed refresh keeps the last good keys. A token with an unknown kid may
// trigger a refresh, rate limited, and a Check never waits on the limiter:
// it joins a fetch in flight (no longer than its own deadline), starts one
// if the limiter allows it now, or is told at once that the kid is unknown.
type Remote struct {
	opts    RemoteOptions
	current atomic.Pointer[Set]
	gen     atomic.Uint64
	loaded  atomic.Bool
	last    atomic.Pointer[fetched] // what the last successful fetch read
	cut     *cutLog
	shown   string // the URL as logs show it: RedactURL of the JWK Set's or the discovery URL

	mu       sync.Mutex
	inflight *flight              // the running fetch; nil when none runs
	bucket   *rate.Limiter        // unknown-kid refreshes
	sought   map[string]time.Time // kid -> when it was last looked for

	// Written only by the running fetch, one at a time.
	jwks validators
	disc discovered
}

// flight is one fetch that callers may wait for.
type flight struct {
	done chan struct{}
	err  error // set before done is closed
}

// positiveOr sets *v to def unless it is above zero.
func positiveOr[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// NewRemote returns a source for opts. It fetches nothing until Run or
// Refresh.
func NewRemote(opts RemoteOptions) *Remote {
	positiveOr(&opts.RefreshInterval, DefaultRefreshInterval)
	positiveOr(&opts.HTTPTimeout, DefaultHTTPTimeout)
	positiveOr(&opts.UnknownKIDBurst, DefaultUnknownKIDBurst)
	positiveOr(&opts.UnknownKIDRefill, DefaultUnknownKIDRefill)
	positiveOr(&opts.UnknownKIDMemory, DefaultUnknownKIDMemory)
	positiveOr(&opts.RetryInterval, DefaultRetryInterval)
	if opts.Tracer == nil {
		opts.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.HTTPTimeout}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Remote{
		opts:   opts,
		cut:    newCutLog(opts.Logger),
		bucket: rate.NewLimiter(rate.Every(opts.UnknownKIDRefill), opts.UnknownKIDBurst),
		sought: make(map[string]time.Time),
	}
	r.shown = RedactURL(opts.URL)
	if opts.DiscoveryIssuer != "" {
		r.shown = RedactURL(DiscoveryURL(opts.DiscoveryIssuer))
	}
	if len(opts.Static) > 0 {
		r.current.Store(NewSet(opts.Static, r.gen.Add(1)))
	}
	if f := opts.Seed.lastFetch(); f != nil && opts.Seed.opts.URL == opts.URL && opts.Seed.opts.DiscoveryIssuer == opts.DiscoveryIssuer {
		r.jwks, r.disc = f.jwks, f.disc
		r.store(f)
	}
	return r
}

// fetched is what a successful fetch read: the keys of the set, and the
// validators to send next time.
type fetched struct {
	keys []Key
	jwks validators
	disc discovered
}

// lastFetch returns what r's last successful fetch read, or nil.
func (r *Remote) lastFetch() *fetched {
	if r == nil {
		return nil
	}
	return r.last.Load()
}

// store makes f, beside the static keys, the current set (a new one only
// when the keys changed), and r loaded.
func (r *Remote) store(f *fetched) {
	all := make([]Key, 0, len(r.opts.Static)+len(f.keys))
	all = append(append(all, r.opts.Static...), f.keys...)
	if !r.Current().sameKeys(all) {
		r.current.Store(NewSet(all, r.gen.Add(1)))
	}
	r.last.Store(f)
	r.loaded.Store(true)
}

// Current returns the last good set, or nil while no key is loaded.
func (r *Remote) Current() *Set { return r.current.Load() }

// Loaded reports whether a fetch has ever succeeded.
func (r *Remote) Loaded() bool { return r.loaded.Load() }

// Run fetches the set at once (or, when a Refresh has loaded it already,
// after RefreshInterval), then every RefreshInterval, until ctx ends.
// After a failed fetch it retries sooner: RetryInterval, doubling up to
// min(RefreshInterval, MaxRetryInterval), until a fetch succeeds; the last
// good keys are kept meanwhile.
func (r *Remote) Run(ctx context.Context) {
	maxRetry := min(r.opts.RefreshInterval, MaxRetryInterval)
	retry := min(r.opts.RetryInterval, maxRetry)
	var delay time.Duration
	if r.Loaded() {
		delay = r.opts.RefreshInterval
	}
	for {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		delay = r.opts.RefreshInterval
		if err := r.refresh(ctx); err != nil {
			delay = retry
			retry = min(retry*2, maxRetry)
		} else {
			retry = min(r.opts.RetryInterval, maxRetry)
		}
	}
}

// Refresh fetches the set now, or joins the fetch already running, and
// waits for the outcome. Run's loop does the same on its own schedule;
// Refresh is for start-up and for "verify", which fetch once.
func (r *Remote) Refresh(ctx context.Context) error { return r.refresh(ctx) }

func (r *Remote) refresh(ctx context.Context) error {
	r.mu.Lock()
	f := r.inflight
	if f == nil {
		f = r.startLocked(ctx)
	}
	r.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLocked starts a fetch that callers can join. r.mu is held.
func (r *Remote) startLocked(ctx context.Context) *flight {
	f := &flight{done: make(chan struct{})}
	r.inflight = f
	go func() {
		err := r.fetch(ctx)
		r.mu.Lock()
		r.inflight = nil
		if err != nil {
			// A failing endpoint is not hit again by unknown kids until the
			// bucket refills; the Run loop retries on its own schedule.
			now := time.Now()
			if n := int(r.bucket.TokensAt(now)); n > 0 {
				r.bucket.AllowN(now, n)
			}
		}
		r.mu.Unlock()
		// Reported before the waiters wake, so that a Refresh that returns
		// has been counted.
		if r.opts.OnRefresh != nil {
			r.opts.OnRefresh(err)
		}
		if err != nil {
			r.opts.Logger.Warn("JWKS refresh failed; keeping the last good keys", "url", r.shown, "err", err)
		}
		f.err = err
		close(f.done)
	}()
	return f
}

// Lookup returns the candidate keys for kid and alg. When the token names a
// kid the set does not have, it may first wait for a refresh: one already
// running, or one it starts if the kid was not looked for in the last
// UnknownKIDMemory and the token bucket allows it now. It waits no longer
// than ctx allows; otherwise it answers from the keys it has at once.
func (r *Remote) Lookup(ctx context.Context, dst []Key, kid, alg string) ([]Key, uint64, error) {
	set := r.Current()
	if set != nil && kid != "" && !set.HasKID(kid) && r.awaitFetchFor(ctx, kid) {
		set = r.Current()
	}
	return lookup(set, r.cut, dst, kid, alg)
}

// awaitFetchFor joins or starts a fetch for kid and waits for it. It
// reports whether a fetch completed.
func (r *Remote) awaitFetchFor(ctx context.Context, kid string) bool {
	now := time.Now()
	r.mu.Lock()
	f := r.inflight
	if f == nil {
		if r.soughtRecently(kid, now) || !r.bucket.AllowN(now, 1) {
			r.mu.Unlock()
			return false
		}
		// Detached from this Check: one caller giving up must not cancel a
		// fetch that others wait for. HTTPTimeout bounds it.
		f = r.startLocked(context.WithoutCancel(ctx))
	}
	r.remember(kid, now)
	r.mu.Unlock()
	select {
	case <-f.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// soughtRecently reports whether kid was looked for within
// UnknownKIDMemory of now. r.mu is held.
func (r *Remote) soughtRecently(kid string, now time.Time) bool {
	t, ok := r.sought[kid]
	return ok && now.Sub(t) < r.opts.UnknownKIDMemory
}

// remember notes that kid was looked for at now, keeping the memory
// bounded. r.mu is held.
func (r *Remote) remember(kid string, now time.Time) {
	if _, ok := r.sought[kid]; !ok && len(r.sought) >= maxSoughtKIDs {
		for k, t := range r.sought {
			if now.Sub(t) >= r.opts.UnknownKIDMemory {
				delete(r.sought, k)
			}
		}
		for k := range r.sought {
			if len(r.sought) < maxSoughtKIDs {
				break
			}
			delete(r.sought, k)
		}
	}
	r.sought[kid] = now
}
