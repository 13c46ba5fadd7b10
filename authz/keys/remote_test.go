package keys_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

// refreshLog records every OnRefresh call with the (bubble) time it came.
type refreshLog struct {
	mu  sync.Mutex
	at  []time.Time
	err []error
}

func (l *refreshLog) record(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, time.Now())
	l.err = append(l.err, err)
}

func (l *refreshLog) snapshot() ([]time.Time, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.at), slices.Clone(l.err)
}

// TestRemoteKeyPublishedAfterItsFirstToken: the issuer's first token with
// a new kid arrives before the key is published, and the key is published
// 1 s later. The client retries every 300 ms; the token is accepted within
// 5 s (not after a 30 s or 5 min lock-out). Also after a flood of random
// kids has just emptied the token bucket: then within the bucket's refill.
func TestRemoteKeyPublishedAfterItsFirstToken(t *testing.T) {
	for _, tc := range []struct {
		name      string
		floodKIDs int
		within    time.Duration
	}{
		{"alone", 0, 5 * time.Second},
		{"right after a flood of random kids", 100, keys.DefaultUnknownKIDRefill + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k1, k2 := generate(t, "RS256"), generate(t, "RS256")
			p := servingK1(t, k1)
			synctest.Test(t, func(t *testing.T) {
				r := bubbleRemote(t, p, keys.RemoteOptions{})
				v := verifier(r, "RS256")
				ctx := context.Background()
				for i := range tc.floodKIDs {
					r.Lookup(ctx, nil, fmt.Sprintf("random-%d", i), "RS256")
				}
				tok := mint(t, k2, "RS256", map[string]any{"kid": "k2"}, nil)
				start := time.Now()
				if _, err := v.Verify(ctx, tok); !errors.Is(err, keys.ErrUnknownKID) {
					t.Fatalf("k2 before it is published: %v, want ErrUnknownKID", err)
				}
				time.AfterFunc(time.Second, func() {
					p.set("/jwks", page{body: jwks(t, jwk(t, k1, map[string]any{"kid": "k1"}), jwk(t, k2, map[string]any{"kid": "k2"}))})
				})
				var err error
				for {
					time.Sleep(300 * time.Millisecond)
					if _, err = v.Verify(ctx, tok); err == nil || time.Since(start) > time.Minute {
						break
					}
				}
				took := time.Since(start)
				if err != nil || took > tc.within {
					t.Errorf("k2 accepted after %v (err %v), want within %v of its first token", took, err, tc.within)
				}
				t.Logf("k2, published 1 s after its first token, accepted %v after it; %d fetches", took, p.fetches("/jwks"))
			})
		})
	}
}

// TestRemoteUnknownKIDFlood: 1,000 Lookups with 200 random kids over 10 s
// cost at most 10 fetches, and no Lookup waits: on the bubble's clock each
// returns at the instant it was made.
func TestRemoteUnknownKIDFlood(t *testing.T) {
	k1 := generate(t, "ES256")
	p := servingK1(t, k1)
	synctest.Test(t, func(t *testing.T) {
		r := bubbleRemote(t, p, keys.RemoteOptions{})
		kids := make([]string, 200)
		for i := range kids {
			kids[i] = fmt.Sprintf("%016x", rand.Uint64())
		}
		var wg sync.WaitGroup
		var waited, allowed atomic.Int64
		for i := range 1000 {
			wg.Go(func() {
				time.Sleep(time.Duration(i) * 10 * time.Millisecond)
				start := time.Now()
				_, _, err := r.Lookup(context.Background(), nil, kids[rand.IntN(len(kids))], "ES256")
				if time.Since(start) > 0 {
					waited.Add(1)
				}
				if !errors.Is(err, keys.ErrUnknownKID) {
					allowed.Add(1)
				}
			})
		}
		wg.Wait()
		fetches := p.fetches("/jwks") - 1
		if fetches > 10 {
			t.Errorf("1,000 Lookups with 200 random kids over 10 s: %d fetches, want at most 10", fetches)
		}
		if waited.Load() > 0 || allowed.Load() > 0 {
			t.Errorf("%d Lookups waited on the clock, %d did not answer ErrUnknownKID", waited.Load(), allowed.Load())
		}
		if _, _, err := r.Lookup(context.Background(), nil, "k1", "ES256"); err != nil {
			t.Errorf("known kid after the flood: %v", err)
		}
		t.Logf("1,000 Lookups, 200 random kids, 10 s: %d fetches", fetches)
	})
}

// TestRemoteSameKIDAtMostOnceASecond: one unknown kid asked for every 10 ms
// is fetched for about once a second, not on every Lookup, and not as fast
// as the bucket would allow.
func TestRemoteSameKIDAtMostOnceASecond(t *testing.T) {
	k1 := generate(t, "ES256")
	p := servingK1(t, k1)
	synctest.Test(t, func(t *testing.T) {
		var log refreshLog
		r := bubbleRemote(t, p, keys.RemoteOptions{OnRefresh: log.record})
		for range 400 { // 4 s
			r.Lookup(context.Background(), nil, "not-there", "ES256")
			time.Sleep(10 * time.Millisecond)
		}
		at, _ := log.snapshot()
		at = at[1:] // the first is the start-up fetch
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < time.Second {
				t.Errorf("fetches %d and %d for the same kid %v apart, want at least 1s", i-1, i, gap)
			}
		}
		if len(at) < 3 || len(at) > 4 {
			t.Errorf("%d fetches for one kid over 4 s, want 3 or 4", len(at))
		}
		t.Logf("one unknown kid every 10 ms for 4 s: %d fetches", len(at))
	})
}

// TestRemoteCheckNeverWaitsOnTheLimiter: while a fetch hangs, a Check with
// an unknown kid joins it and waits no longer than its own deadline; one
// without a deadline gets the keys the fetch brings; a known kid is
// answered at once. When the limiter allows no fetch, the answer comes at
// once too. Real time: a hanging network read stops a bubble's clock.
func TestRemoteCheckNeverWaitsOnTheLimiter(t *testing.T) {
	k1, k2 := generate(t, "ES256"), generate(t, "ES256")
	p := servingK1(t, k1)
	r := keys.NewRemote(keys.RemoteOptions{URL: p.URL + "/jwks", UnknownKIDBurst: 1, UnknownKIDRefill: time.Hour})
	mustRefresh(t, r)

	release := p.holdRequests()
	defer release()
	p.set("/jwks", page{body: jwks(t, jwk(t, k1, map[string]any{"kid": "k1"}), jwk(t, k2, map[string]any{"kid": "k2"}))})
	const deadline = 200 * time.Millisecond
	joined := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	go func() {
		_, _, err := r.Lookup(context.Background(), nil, "k2", "ES256") // no deadline: it waits for the fetch
		joined <- err
	}()
	_, _, err := r.Lookup(ctx, nil, "k2", "ES256")
	if took := time.Since(start); !errors.Is(err, keys.ErrUnknownKID) || took > deadline+500*time.Millisecond {
		t.Errorf("unknown kid with a %v deadline: %v after %v, want ErrUnknownKID by the deadline", deadline, err, took)
	}
	start = time.Now()
	if _, _, err := r.Lookup(context.Background(), nil, "k1", "ES256"); err != nil || time.Since(start) > 100*time.Millisecond {
		t.Errorf("known kid during the hanging fetch: %v after %v", err, time.Since(start))
	}
	release()
	if err := <-joined; err != nil {
		t.Errorf("the Lookup that waited for the fetch: %v, want k2", err)
	}
	if got := p.fetches("/jwks"); got != 2 {
		t.Errorf("fetches = %d, want 2 (start-up, and one for k2 that both Lookups shared)", got)
	}
	// The bucket (1, refilled hourly) is empty: another unknown kid is told
	// at once, with no fetch.
	start = time.Now()
	if _, _, err := r.Lookup(context.Background(), nil, "k3", "ES256"); !errors.Is(err, keys.ErrUnknownKID) || time.Since(start) > 100*time.Millisecond {
		t.Errorf("unknown kid with the bucket empty: %v after %v", err, time.Since(start))
	}
	if got := p.fetches("/jwks"); got != 2 {
		t.Errorf("fetches = %d after the limiter refused, want still 2", got)
	}
}

// TestRemoteFailedFetchEmptiesTheBucket: a fetch that fails stops unknown
// kids from hitting the failing endpoint again until the bucket refills.
func TestRemoteFailedFetchEmptiesTheBucket(t *testing.T) {
	k1 := generate(t, "ES256")
	p := servingK1(t, k1)
	synctest.Test(t, func(t *testing.T) {
		r := bubbleRemote(t, p, keys.RemoteOptions{})
		p.set("/jwks", page{status: http.StatusBadGateway})
		ctx := context.Background()
		r.Lookup(ctx, nil, "a", "ES256")
		r.Lookup(ctx, nil, "b", "ES256")
		time.Sleep(5 * time.Second)
		r.Lookup(ctx, nil, "c", "ES256")
		if got := p.fetches("/jwks") - 1; got != 1 {
			t.Errorf("fetches in the 5 s after a failure = %d, want 1", got)
		}
		time.Sleep(5 * time.Second)
		r.Lookup(ctx, nil, "d", "ES256")
		if got := p.fetches("/jwks") - 1; got != 2 {
			t.Errorf("fetches once the bucket refilled = %d, want 2", got)
		}
		if _, _, err := r.Lookup(ctx, nil, "k1", "ES256"); err != nil {
			t.Errorf("last good key: %v", err)
		}
	})
}

// TestRemoteRetriesAFailingEndpoint: after keys loaded, a failing endpoint
// is retried from 1 s, doubling, at most a minute apart (and at most the
// refresh interval apart), each failure reported to OnRefresh, the last
// good keys kept; once it answers again, the schedule is the refresh
// interval again. Before any key loaded, the same.
func TestRemoteRetriesAFailingEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name      string
		interval  time.Duration
		loadFirst bool
		wantGaps  []time.Duration // between failures, from the first
	}{
		{"after keys loaded, hourly refresh", time.Hour, true,
			[]time.Duration{1, 2, 4, 8, 16, 32, 60, 60}},
		{"after keys loaded, 10 s refresh", 10 * time.Second, true,
			[]time.Duration{1, 2, 4, 8, 10, 10}},
		{"never loaded, hourly refresh", time.Hour, false,
			[]time.Duration{1, 2, 4, 8, 16, 32, 60, 60}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k1 := generate(t, "ES256")
			p := newIDP(t)
			good := page{body: jwks(t, jwk(t, k1, map[string]any{"kid": "k1"}))}
			p.set("/jwks", good)
			if !tc.loadFirst {
				p.set("/jwks", page{status: http.StatusServiceUnavailable})
			}
			synctest.Test(t, func(t *testing.T) {
				var log refreshLog
				r := keys.NewRemote(keys.RemoteOptions{URL: p.URL + "/jwks", RefreshInterval: tc.interval, Client: bubbleClient(), OnRefresh: log.record})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go r.Run(ctx)
				synctest.Wait()
				var gen uint64
				if tc.loadFirst {
					gen = r.Current().Generation
					time.Sleep(tc.interval / 2)
					p.set("/jwks", page{status: http.StatusInternalServerError})
				}
				var gaps []time.Duration
				for end := time.Now().Add(tc.interval + 20*time.Minute); time.Now().Before(end); {
					time.Sleep(time.Second)
					if at, _ := log.snapshot(); len(at) > len(tc.wantGaps)+2 {
						break
					}
				}
				at, errs := log.snapshot()
				first := slices.IndexFunc(errs, func(err error) bool { return err != nil })
				for i := first + 1; i < len(errs) && len(gaps) < len(tc.wantGaps); i++ {
					if errs[i] == nil {
						t.Fatalf("refresh %d succeeded against a failing endpoint", i)
					}
					gaps = append(gaps, at[i].Sub(at[i-1]))
				}
				var want []time.Duration
				for _, g := range tc.wantGaps {
					want = append(want, g*time.Second)
				}
				if !slices.Equal(gaps, want) {
					t.Errorf("retries after the first failure came %v apart, want %v", gaps, want)
				}
				within := 0
				for i := first; i < len(at) && at[i].Sub(at[first]) <= time.Minute; i++ {
					within++
				}
				if tc.loadFirst {
					if set := r.Current(); set == nil || set.Generation != gen {
						t.Errorf("the last good keys were not kept: %v", set)
					}
					if _, _, err := r.Lookup(ctx, nil, "k1", "ES256"); err != nil {
						t.Errorf("k1 while the endpoint fails: %v", err)
					}
				}

				// It recovers: the next retry succeeds, then the refresh
				// interval is the schedule again.
				p.set("/jwks", good)
				before := len(at)
				recovered := time.Now()
				for {
					time.Sleep(time.Second)
					if at, errs := log.snapshot(); len(at) > before && errs[len(errs)-1] == nil {
						break
					}
				}
				if took := time.Since(recovered); took > min(tc.interval, time.Minute) {
					t.Errorf("recovery seen %v after the endpoint answered again", took)
				}
				time.Sleep(tc.interval - time.Second)
				if at, _ := log.snapshot(); len(at) != before+1 {
					t.Errorf("%d fetches within the refresh interval after recovering, want none", len(at)-before-1)
				}
				t.Logf("failures counted in the first minute: %d; retry gaps %v", within, gaps)
			})
		})
	}
}

// TestRemoteConditionalFetch: once an answer had an ETag or Last-Modified,
// refreshes send If-None-Match or If-Modified-Since; a 304 keeps the keys
// (same set, same Generation) and is reported as a success.
func TestRemoteConditionalFetch(t *testing.T) {
	k1, k2 := generate(t, "ES256"), generate(t, "ES256")
	set1 := jwks(t, jwk(t, k1, map[string]any{"kid": "k1"}))
	set2 := jwks(t, jwk(t, k1, map[string]any{"kid": "k1"}), jwk(t, k2, map[string]any{"kid": "k2"}))
	const lm1, lm2 = "Mon, 02 Jan 2006 15:04:05 GMT", "Tue, 03 Jan 2006 15:04:05 GMT"
	for _, tc := range []struct {
		name         string
		v1, v2       page
		wantHeader   string
		wantINM      string
		wantIMS      string
		absentHeader string
	}{
		{"ETag and Last-Modified", page{body: set1, etag: `"v1"`, lastModified: lm1}, page{body: set2, etag: `"v2"`, lastModified: lm2}, "If-None-Match", `"v1"`, lm1, ""},
		{"ETag only", page{body: set1, etag: `W/"v1"`}, page{body: set2, etag: `W/"v2"`}, "If-None-Match", `W/"v1"`, "", "If-Modified-Since"},
		{"Last-Modified only", page{body: set1, lastModified: lm1}, page{body: set2, lastModified: lm2}, "If-Modified-Since", "", lm1, "If-None-Match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newIDP(t)
			p.set("/jwks", tc.v1)
			var log refreshLog
			r := keys.NewRemote(keys.RemoteOptions{URL: p.URL + "/jwks", OnRefresh: log.record})
			mustRefresh(t, r)
			if h := p.lastHeaders("/jwks"); h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != "" {
				t.Errorf("first fetch was conditional: %v", h)
			}
			set := r.Current()
			for range 2 {
				mustRefresh(t, r)
			}
			h := p.lastHeaders("/jwks")
			if h.Get("If-None-Match") != tc.wantINM || h.Get("If-Modified-Since") != tc.wantIMS {
				t.Errorf("If-None-Match %q, If-Modified-Since %q; want %q, %q", h.Get("If-None-Match"), h.Get("If-Modified-Since"), tc.wantINM, tc.wantIMS)
			}
			if got := r.Current(); got != set || got.Generation != set.Generation {
				t.Errorf("after 304s the set changed: generation %d, was %d", got.Generation, set.Generation)
			}
			if _, errs := log.snapshot(); len(errs) != 3 || errs[1] != nil || errs[2] != nil {
				t.Errorf("OnRefresh got %v, want three nil (200, 304, 304)", errs)
			}
			if _, _, err := r.Lookup(context.Background(), nil, "k1", "ES256"); err != nil {
				t.Errorf("k1 after 304s: %v", err)
			}

			// The issuer rotates: the conditional request gets a 200.
			p.set("/jwks", tc.v2)
			mustRefresh(t, r)
			if got := r.Current(); got.Generation == set.Generation || !got.HasKID("k2") {
				t.Errorf("after the set changed: generation %d (was %d), k2 %v", got.Generation, set.Generation, got.HasKID("k2"))
			}
			mustRefresh(t, r)
			if h := p.lastHeaders("/jwks"); h.Get(tc.wantHeader) == "" || h.Get(tc.wantHeader) == p.headers["/jwks"][1].Get(tc.wantHeader) {
				t.Errorf("after the new answer, %s = %q: want the new validator", tc.wantHeader, h.Get(tc.wantHeader))
			}
		})
	}
}

// TestRemoteUnexpected304IsAFailure: a 304 to a request that was not
// conditional says nothing about the keys.
func TestRemoteUnexpected304IsAFailure(t *testing.T) {
	p := newIDP(t)
	p.set("/jwks", page{status: http.StatusNotModified})
	r := keys.NewRemote(keys.RemoteOptions{URL: p.URL + "/jwks"})
	if err := r.Refresh(context.Background()); err == nil || r.Current() != nil {
		t.Errorf("unconditional request answered 304: err %v, set %v; want an error and no keys", err, r.Current())
	}
}

// TestRemoteUnchangedAnswerKeepsGeneration: a refresh whose answer holds
// the same keys (reformatted, even) leaves the set and its Generation
// alone, so the token cache keeps its entries; a changed key changes it.
func TestRemoteUnchangedAnswerKeepsGeneration(t *testing.T) {
	k1, k2 := generate(t, "RS256"), generate(t, "RS256")
	p := newIDP(t)
	p.set("/jwks", page{body: jwks(t, jwk(t, k1, map[string]any{"kid": "k1", "alg": "RS256"}))})
	r := keys.NewRemote(keys.RemoteOptions{URL: p.URL + "/jwks"})
	mustRefresh(t, r)
	set := r.Current()
	v := verifier(r, "RS256")
	res, err := v.Verify(context.Background(), mint(t, k1, "RS256", map[string]any{"kid": "k1"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	reformatted := append([]byte("\n  "), jwks(t, jwk(t, k1, map[string]any{"alg": "RS256", "kid": "k1", "ignored": true}))...)
	p.set("/jwks", page{body: reformatted})
	mustRefresh(t, r)
	if got := r.Current(); got != set || res.KeyGen != got.Generation {
		t.Errorf("an unchanged answer changed the generation: %d, was %d", got.Generation, set.Generation)
	}
	for _, changed := range [][]byte{
		jwks(t, jwk(t, k2, map[string]any{"kid": "k1", "alg": "RS256"})),                                                          // another key under the same kid
		jwks(t, jwk(t, k2, map[string]any{"kid": "k1", "alg": "RS384"})),                                                          // another alg
		jwks(t, jwk(t, k2, map[string]any{"kid": "k1", "alg": "RS384"}), jwk(t, k1, map[string]any{"kid": "k0", "alg": "RS256"})), // a key more
	} {
		before := r.Current().Generation
		p.set("/jwks", page{body: changed})
		mustRefresh(t, r)
		if r.Current().Generation == before {
			t.Errorf("a changed set kept generation %d", before)
		}
	}
}

// TestRemoteJoinedRefreshReportsItsOutcome: Refresh joining a fetch already
// running returns that fetch's error, not nil.
func TestRemoteJoinedRefreshReportsItsOutcome(t *testing.T) {
	p := newIDP(t)
	p.set("/jwks", page{status: http.StatusInternalServerError})
	r := keys.NewRemote(keys.RemoteOptions{URL: p.URL + "/jwks"})
	release := p.holdRequests()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- r.Refresh(context.Background()) }()
	}
	time.Sleep(50 * time.Millisecond) // let both reach the server or join
	release()
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a Refresh of a failing endpoint returned nil")
		}
	}
	if got := p.fetches("/jwks"); got > 2 {
		t.Errorf("fetches = %d", got)
	}
}

var _ token.KeySource = (*keys.Remote)(nil)

// TestRemoteRunAfterRefresh: a set that Refresh has just loaded (a reload
// fetches a changed provider's keys before its swap) is not fetched again
// when Run starts, only after RefreshInterval.
func TestRemoteRunAfterRefresh(t *testing.T) {
	p := servingK1(t, generate(t, "ES256"))
	synctest.Test(t, func(t *testing.T) {
		r := bubbleRemote(t, p, keys.RemoteOptions{RefreshInterval: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go r.Run(ctx)
		time.Sleep(time.Hour - time.Second)
		synctest.Wait()
		if got := p.fetches("/jwks"); got != 1 {
			t.Fatalf("fetches = %d in the hour after Refresh, want 1 (Refresh's own)", got)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := p.fetches("/jwks"); got != 2 {
			t.Errorf("fetches = %d an hour after Refresh, want 2", got)
		}
	})
}
