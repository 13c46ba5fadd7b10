//go:build soak

package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/signing"
)

// soakEnv reads a duration or a number from the environment.
func soakEnv[T time.Duration | int](t *testing.T, name string, def T) T {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out any
	var err error
	switch any(def).(type) {
	case time.Duration:
		out, err = time.ParseDuration(v)
	case int:
		out, err = strconv.Atoi(v)
	}
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return out.(T)
}

// soakSample is what /metrics says at one moment, and the Checks answered
// since the sample before.
type soakSample struct {
	at         time.Duration
	rss        float64 // process_resident_memory_bytes
	heap       float64 // go_memstats_heap_inuse_bytes
	goroutines float64 // go_goroutines
	checks     int64
}

// TestSoak runs serve as a child process under a steady load for
// JWTAUTHZ_SOAK_DURATION (default 10m) at JWTAUTHZ_SOAK_RATE Checks per
// second (default 500): 1% fresh users, 9% known users with a token not seen
// before (a full verification), 90% known users with their usual token (the
// cache). It samples the service's RSS and goroutines from /metrics every
// JWTAUTHZ_SOAK_SAMPLE (default 10s), after a warm-up (JWTAUTHZ_SOAK_WARMUP,
// default a tenth of the run, at most a minute), and asserts no error, the rate held, and memory and
// goroutines flat: the last third's average RSS within 20% of the first
// third's, goroutines within 5. It is not part of the default test run:
//
//	go test -tags soak -run TestSoak -timeout 30m ./cmd/jwtauthz/
func TestSoak(t *testing.T) {
	dur := soakEnv(t, "JWTAUTHZ_SOAK_DURATION", 10*time.Minute)
	rate := soakEnv(t, "JWTAUTHZ_SOAK_RATE", 500)
	every := soakEnv(t, "JWTAUTHZ_SOAK_SAMPLE", 10*time.Second)
	warmup := soakEnv(t, "JWTAUTHZ_SOAK_WARMUP", min(dur/10, time.Minute))
	const knownUsers, workers, conns = 2000, 32, 8

	s := servetest.New(t)
	// A cache of 4096 tokens fills during the warm-up, so what is sampled is
	// the steady state; the default (100,000) would still be filling, by
	// design, at the end of a 10-minute run at this rate.
	f, err := os.OpenFile(s.ConfigPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "cache: {max_entries: 4096}")
	f.Close()
	c := startChild(t, s.ConfigPath, nil, "--drain", "1s")
	waitHealth(t, c.grpcAddr, healthpb.HealthCheckResponse_SERVING)
	ttl := warmup + dur + 10*time.Minute
	tokens := make([]string, knownUsers)
	for i := range tokens {
		tokens[i] = s.Mint(t, fmt.Sprintf("known-%05d", i), ttl)
	}
	ccs := make([]*checkClient, conns)
	for i := range ccs {
		ccs[i] = dialCheck(t, c.grpcAddr)
	}

	var (
		allows, errs, fresh atomic.Int64
		firstErr            atomic.Value
		freshSeq            atomic.Int64
		late                atomic.Int64 // ticks whose Checks found every worker busy
	)
	jobs := make(chan struct{}, rate)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := ccs[w%conns]
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for range jobs {
				var tok string
				var err error
				switch p := rnd.IntN(100); {
				case p == 0:
					tok, err = signing.Mint(s.Key, fmt.Sprintf("fresh-%07d", freshSeq.Add(1)), signing.Options{TTL: ttl})
					fresh.Add(1)
				case p < 10:
					tok, err = signing.Mint(s.Key, fmt.Sprintf("known-%05d", rnd.IntN(knownUsers)), signing.Options{TTL: ttl})
				default:
					tok = tokens[rnd.IntN(knownUsers)]
				}
				var a answer
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					a, err = cc.check(ctx, tok)
					cancel()
				}
				if err == nil && !a.allow {
					err = fmt.Errorf("denied: %+v", a)
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				allows.Add(1)
			}
		}()
	}

	// The pacer releases rate/100 Checks every 10 ms.
	stop := make(chan struct{})
	pacerDone := make(chan struct{})
	go func() {
		defer close(pacerDone)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		per, carry := rate/100, rate%100
		acc := 0
		for {
			select {
			case <-stop:
				close(jobs)
				return
			case <-tick.C:
			}
			n := per
			if acc += carry; acc >= 100 {
				acc -= 100
				n++
			}
			for range n {
				select {
				case jobs <- struct{}{}:
				default:
					late.Add(1)
				}
			}
		}
	}()

	start := time.Now()
	var samples []soakSample
	var lastChecks int64
	time.Sleep(warmup)
	warmChecks := allows.Load() + errs.Load()
	lastChecks = warmChecks
	sampleStart := time.Now()
	for time.Since(sampleStart) < dur {
		time.Sleep(every)
		m := scrapeMetrics(t, "http://"+c.httpAddr+"/metrics")
		n := allows.Load() + errs.Load()
		samples = append(samples, soakSample{
			at: time.Since(start).Round(time.Second), rss: m["process_resident_memory_bytes"],
			heap: m["go_memstats_heap_inuse_bytes"], goroutines: m["go_goroutines"], checks: n - lastChecks,
		})
		lastChecks = n
		if errs.Load() > 0 {
			break
		}
	}
	close(stop)
	<-pacerDone
	wg.Wait()
	elapsed := time.Since(sampleStart)
	c.cmd.Process.Signal(syscall.SIGTERM)
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Errorf("serve exited %d", code)
	}

	t.Logf("%8s %10s %10s %10s %8s", "t", "RSS MiB", "heap MiB", "goroutines", "Checks/s")
	for _, sm := range samples {
		t.Logf("%8v %10.1f %10.1f %10.0f %8.0f", sm.at, sm.rss/(1<<20), sm.heap/(1<<20), sm.goroutines, float64(sm.checks)/every.Seconds())
	}
	total := allows.Load() + errs.Load()
	achieved := float64(total-warmChecks) / elapsed.Seconds()
	t.Logf("rate %d/s asked, %.1f/s achieved over %v (after a %v warm-up); %d Checks, %d allowed, %d errors, %d fresh users; %d Checks dropped by the pacer",
		rate, achieved, elapsed.Round(time.Second), warmup, total, allows.Load(), errs.Load(), fresh.Load(), late.Load())
	if n := errs.Load(); n > 0 {
		t.Fatalf("%d Checks failed; first: %v", n, firstErr.Load())
	}
	if achieved < 0.95*float64(rate) || late.Load() > 0 {
		t.Errorf("the load fell behind: %.1f/s of %d/s, %d Checks not sent", achieved, rate, late.Load())
	}
	if len(samples) < 3 {
		t.Fatalf("%d samples: run longer than 3 × %v", len(samples), every)
	}
	third := len(samples) / 3
	avg := func(ss []soakSample, f func(soakSample) float64) float64 {
		sum := 0.0
		for _, s := range ss {
			sum += f(s)
		}
		return sum / float64(len(ss))
	}
	rss := func(s soakSample) float64 { return s.rss }
	gor := func(s soakSample) float64 { return s.goroutines }
	firstRSS, lastRSS := avg(samples[:third], rss), avg(samples[len(samples)-third:], rss)
	firstG, lastG := avg(samples[:third], gor), avg(samples[len(samples)-third:], gor)
	t.Logf("RSS: first third %.1f MiB, last third %.1f MiB (%+.1f%%); goroutines: first third %.1f, last third %.1f; start %.1f MiB / %.0f, end %.1f MiB / %.0f",
		firstRSS/(1<<20), lastRSS/(1<<20), 100*(lastRSS/firstRSS-1), firstG, lastG,
		samples[0].rss/(1<<20), samples[0].goroutines, samples[len(samples)-1].rss/(1<<20), samples[len(samples)-1].goroutines)
	if lastRSS > 1.2*firstRSS {
		t.Errorf("RSS grew: last third %.1f MiB, first third %.1f MiB", lastRSS/(1<<20), firstRSS/(1<<20))
	}
	if lastG > firstG+5 {
		t.Errorf("goroutines grew: last third %.1f, first third %.1f", lastG, firstG)
	}

	// Every allow is a login on disk.
	var logins uint64
	users := storedUsers(t, s.DBPath)
	for _, u := range users {
		logins += u.GetLoginCount()
	}
	if logins != uint64(allows.Load()) {
		t.Errorf("login_count on disk sums to %d, want %d (the allows)", logins, allows.Load())
	}
	t.Logf("%d users in the file, logins %d", len(users), logins)
}

// scrapeMetrics reads the unlabelled samples of a Prometheus text page.
func scrapeMetrics(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out
}
