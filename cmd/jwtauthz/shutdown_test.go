package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jwtauthz/jwtauthz/internal/servetest"
)

// TestShutdownUnderLoad sends SIGTERM to `serve --drain 2s` while clients
// send Checks without pause. Every Check sent before the drain period ends
// must be answered (an allow); after it, connection errors are expected.
// The process must exit 0 with every login on disk: each user's
// login_count equals the allows its client received.
func TestShutdownUnderLoad(t *testing.T) {
	const (
		drain   = 2 * time.Second
		clients = 8
		// margin allows for a Check sent just before the drain ends that
		// reaches the server after it stopped taking new RPCs.
		margin = 250 * time.Millisecond
	)
	s := servetest.New(t)
	c := startChild(t, s.ConfigPath, nil, "--drain", drain.String())
	waitHealth(t, c.grpcAddr, healthpb.HealthCheckResponse_SERVING)

	type call struct {
		start, end time.Time
		err        error
		allow      bool
	}
	var (
		mu      sync.Mutex
		calls   []call
		allowed = make([]int, clients)
		wg      sync.WaitGroup
		done    = make(chan struct{})
	)
	for cl := range clients {
		cc := dialCheck(t, c.grpcAddr) // one connection per client, as Envoy's workers have
		tok := s.Mint(t, fmt.Sprintf("drain-%d", cl), time.Hour)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				a, err := cc.check(ctx, tok)
				cancel()
				mu.Lock()
				calls = append(calls, call{start: start, end: time.Now(), err: err, allow: err == nil && a.allow})
				if err == nil && a.allow {
					allowed[cl]++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // the server is gone; do not spin
				}
			}
		}()
	}

	time.Sleep(300 * time.Millisecond) // load before the signal
	sigAt := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(drain / 4)
	if got := healthStatus(t, c.grpcAddr, authzService); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health during the drain = %v, want NOT_SERVING", got)
	}
	code := c.wait(t, 20*time.Second)
	exitedAt := time.Now()
	time.Sleep(200 * time.Millisecond) // clients see the errors after the exit
	close(done)
	wg.Wait()
	if code != 0 {
		t.Fatalf("serve exited with status %d, want 0; logs:\n%s", code, c.logs.String())
	}

	sort.Slice(calls, func(i, j int) bool { return calls[i].start.Before(calls[j].start) })
	drainEnd := sigAt.Add(drain)
	var firstErr *call
	var lastOK time.Time
	inDrain, total, errs := 0, 0, 0
	for i := range calls {
		cl := &calls[i]
		total++
		if cl.err != nil {
			errs++
			if firstErr == nil {
				firstErr = cl
			}
			if cl.start.Before(drainEnd.Add(-margin)) {
				t.Errorf("a Check sent %v after SIGTERM, before the drain ended (%v), got %v",
					cl.start.Sub(sigAt).Round(time.Millisecond), drain, cl.err)
			}
			continue
		}
		if !cl.allow {
			t.Errorf("a Check sent %v after SIGTERM was answered but not allowed", cl.start.Sub(sigAt))
		}
		if cl.end.After(lastOK) {
			lastOK = cl.end
		}
		if cl.start.After(sigAt.Add(drain/10)) && cl.end.Before(drainEnd.Add(-drain/10)) {
			inDrain++
		}
	}
	if inDrain == 0 {
		t.Error("no Check was answered during the drain period")
	}
	if firstErr == nil {
		t.Error("no Check failed after the drain: the clients stopped too early to see the boundary")
	} else {
		t.Logf("SIGTERM at 0; drain %v; %d Checks, %d allowed during the drain, %d errors", drain, total, inDrain, errs)
		t.Logf("last allow answered at +%v; first error: sent at +%v, failed at +%v (%v); process exited at +%v",
			lastOK.Sub(sigAt).Round(time.Millisecond), firstErr.start.Sub(sigAt).Round(time.Millisecond),
			firstErr.end.Sub(sigAt).Round(time.Millisecond), firstErr.err, exitedAt.Sub(sigAt).Round(time.Millisecond))
	}

	users := storedUsers(t, s.DBPath)
	for cl, n := range allowed {
		name := fmt.Sprintf("drain-%d", cl)
		u, ok := users[name]
		if !ok {
			t.Errorf("user %s (%d allows) is not in the file", name, n)
			continue
		}
		if got := u.GetLoginCount(); got != uint64(n) {
			t.Errorf("user %s: login_count on disk = %d, want %d (the allows its client received)", name, got, n)
		}
	}
}
