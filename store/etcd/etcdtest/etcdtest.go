// Package etcdtest runs a real, one-member etcd server inside a test
// process, on loopback ports and a temporary data directory, so that the
// etcd store is tested against etcd itself rather than a mock.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds the wait for the server to elect itself and serve.
const startTimeout = 30 * time.Second

// Server is a running embedded etcd. Stop and Restart it to test what its
// clients do while it is down; its data directory and ports survive both.
type Server struct {
	dir       string
	clientURL url.URL
	peerURL   url.URL
	mu        sync.Mutex
	etcd      *embed.Etcd // nil while stopped
}

// Start starts a server whose data lives in t.TempDir() and stops it when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		dir:       t.TempDir(),
		clientURL: url.URL{Scheme: "http", Host: freeAddr(t)},
		peerURL:   url.URL{Scheme: "http", Host: freeAddr(t)},
	}
	if err := s.start(); err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. The server must keep the same ports across a restart, so it cannot
// listen on port 0 itself.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *Server) start() error {
	cfg := embed.NewConfig()
	cfg.Name = "test"
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", cfg.Name, s.peerURL.String())
	// Light on a small shared machine: quick election, no fsync, no
	// gateway or metrics, quiet logs.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.UnsafeNoFsync = true
	cfg.EnableGRPCGateway = false
	cfg.SocketOpts.ReuseAddress = true
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return err
	case <-time.After(startTimeout):
		e.Close()
		return fmt.Errorf("not ready after %v", startTimeout)
	}
	s.mu.Lock()
	s.etcd = e
	s.mu.Unlock()
	return nil
}

// Endpoint is the client URL, e.g. http://127.0.0.1:41234.
func (s *Server) Endpoint() string { return s.clientURL.String() }

// Stop stops the server, closing its clients' connections. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.etcd
	s.etcd = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts the stopped server again on the same data and ports.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("restart embedded etcd: %v", err)
	}
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.Endpoint()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Compact compacts the server's history up to its current revision, so
// that a watch that resumes from an older revision is refused.
func (s *Server) Compact(t testing.TB) int64 {
	t.Helper()
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, "compact-probe")
	if err != nil {
		t.Fatalf("etcd revision: %v", err)
	}
	rev := resp.Header.Revision
	if _, err := c.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact etcd at %d: %v", rev, err)
	}
	return rev
}
