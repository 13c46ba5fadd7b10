package keys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// maxJWKSBytes bounds a JWK Set response; real sets are a few kilobytes.
const maxJWKSBytes = 1 << 20

// RemoteOptions configure a Remote source.
type RemoteOptions struct {
	URL string
	// Static keys (PEM files, a JWKS file, an HMAC secret) are part of every
	// snapshot, so a provider with both is usable before the first fetch.
	Static          []Key
	RefreshInterval time.Duration // periodic refresh; default 1h
	HTTPTimeout     time.Duration // one fetch; default 5s
	// UnknownKIDInterval is the minimum time between refreshes triggered by
	// tokens with an unknown kid; default 30s.
	UnknownKIDInterval time.Duration
	// RetryInterval is the first delay before retrying a failed fetch while
	// no key was ever loaded; it doubles up to RefreshInterval. Default 1s.
	RetryInterval time.Duration
	Client        *http.Client // default: a client with HTTPTimeout
	Logger        *slog.Logger
	// OnRefresh, when set, is called after every fetch with its outcome.
	OnRefresh func(err error)
}

// Remote is a JWK Set fetched over HTTP(S) and refreshed in the background.
// A failed refresh keeps the last good keys. A token with an unknown kid may
// trigger a refresh, rate limited, and a Check never waits on the limiter:
// when no refresh is allowed it is told at once that the kid is unknown.
type Remote struct {
	opts    RemoteOptions
	current atomic.Pointer[Set]
	limiter *rate.Limiter
	gen     atomic.Uint64
	loaded  atomic.Bool
	cut     *cutLog

	mu       sync.Mutex
	inflight chan struct{} // closed when the running fetch ends; nil when none runs
}

// NewRemote returns a source for opts.URL. It fetches nothing until Run.
func NewRemote(opts RemoteOptions) *Remote {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = time.Hour
	}
	if opts.HTTPTimeout <= 0 {
		opts.HTTPTimeout = 5 * time.Second
	}
	if opts.UnknownKIDInterval <= 0 {
		opts.UnknownKIDInterval = 30 * time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.HTTPTimeout}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Remote{
		opts:    opts,
		limiter: rate.NewLimiter(rate.Every(opts.UnknownKIDInterval), 1),
		cut:     newCutLog(opts.Logger),
	}
	if len(opts.Static) > 0 {
		r.current.Store(NewSet(opts.Static, r.gen.Add(1)))
	}
	return r
}

// Current returns the last good set, or nil while no key is loaded.
func (r *Remote) Current() *Set { return r.current.Load() }

// Loaded reports whether a fetch has ever succeeded.
func (r *Remote) Loaded() bool { return r.loaded.Load() }

// Run fetches the set at once, then on every RefreshInterval, retrying sooner
// while no key was ever loaded, until ctx ends.
func (r *Remote) Run(ctx context.Context) {
	retry := r.opts.RetryInterval
	for {
		err := r.refresh(ctx)
		delay := r.opts.RefreshInterval
		if err != nil && !r.Loaded() {
			delay = min(retry, r.opts.RefreshInterval)
			retry *= 2
		} else if err == nil {
			retry = r.opts.RetryInterval
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Refresh fetches the set now and waits for the outcome. Run's loop does the
// same on its own schedule; Refresh is for start-up and for "verify", which
// fetch once.
func (r *Remote) Refresh(ctx context.Context) error { return r.refresh(ctx) }

// refresh runs one fetch, or joins the one already running.
func (r *Remote) refresh(ctx context.Context) error {
	r.mu.Lock()
	if ch := r.inflight; ch != nil {
		r.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	r.inflight = ch
	r.mu.Unlock()

	err := r.fetch(ctx)
	r.mu.Lock()
	r.inflight = nil
	r.mu.Unlock()
	close(ch)
	if r.opts.OnRefresh != nil {
		r.opts.OnRefresh(err)
	}
	if err != nil {
		r.opts.Logger.Warn("JWKS refresh failed; keeping the last good keys", "url", r.opts.URL, "err", err)
	}
	return err
}

func (r *Remote) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.HTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.opts.URL, nil)
	if err != nil {
		return fmt.Errorf("fetch JWKS %s: %w", r.opts.URL, err)
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch JWKS %s: HTTP status %d", r.opts.URL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("read JWKS %s: %w", r.opts.URL, err)
	}
	if len(body) > maxJWKSBytes {
		return fmt.Errorf("JWKS %s is larger than %d bytes", r.opts.URL, maxJWKSBytes)
	}
	keys, skipped, err := ParseJWKS(body)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", r.opts.URL, err)
	}
	for _, s := range skipped {
		r.opts.Logger.Warn("JWKS key skipped", "url", r.opts.URL, "err", s)
	}
	all := make([]Key, 0, len(r.opts.Static)+len(keys))
	all = append(append(all, r.opts.Static...), keys...)
	r.current.Store(NewSet(all, r.gen.Add(1)))
	r.loaded.Store(true)
	return nil
}

// Lookup returns the candidate keys for kid and alg. When the token names a
// kid the set does not have, it triggers a refresh if the rate limit allows
// one (or joins a refresh already running) and waits for it, no longer than
// ctx allows; otherwise it answers ErrUnknownKID at once.
func (r *Remote) Lookup(ctx context.Context, dst []Key, kid, alg string) ([]Key, uint64, error) {
	set := r.Current()
	out, gen, err := lookup(set, r.cut, dst, kid, alg)
	if !errors.Is(err, ErrUnknownKID) || kid == "" || set.HasKID(kid) {
		return out, gen, err
	}
	if !r.joinOrStartRefresh(ctx) {
		return out, gen, err
	}
	return lookup(r.Current(), r.cut, dst, kid, alg)
}

// joinOrStartRefresh waits for a refresh already running, or starts one if
// the limiter allows it now. It reports whether a refresh completed.
func (r *Remote) joinOrStartRefresh(ctx context.Context) bool {
	r.mu.Lock()
	ch := r.inflight
	r.mu.Unlock()
	if ch == nil {
		if !r.limiter.Allow() {
			return false
		}
		// The fetch runs detached from this Check's context: one caller
		// giving up must not cancel a fetch that others are waiting on.
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = r.refresh(context.WithoutCancel(ctx))
		}()
		ch = done
	}
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}
