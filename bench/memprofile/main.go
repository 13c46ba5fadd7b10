// Command memprofile attributes jwtauthz's memory with N known users and N
// cached tokens: it builds authz.Server and the bbolt store from a config,
// with the config package, as `jwtauthz serve` does (one ES256 provider
// with an e-mail claim header, the default identity headers), sends N first logins from 64 goroutines straight to
// Server.Check (no gRPC), then N repeats, and reports the live heap after a
// full GC, with and without the token cache, plus a heap profile.
//
//	go run ./bench/memprofile --n 100000 --profile heap.pprof
//	go tool pprof -top -sample_index=inuse_space heap.pprof
//
// The difference between the two runs is what the cache holds; the run
// without it is the store's in-memory users plus the process's baseline.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/config"
)

const issuer = "https://idp-b.example.com"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "memprofile:", err)
		os.Exit(1)
	}
}

func run() error {
	runtime.MemProfileRate = 4096 // fine enough to attribute small per-entry structs
	n := flag.Int("n", 100000, "users, one token each")
	profile := flag.String("profile", "", "write the heap profile of the run with the cache here")
	flag.Parse()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	toks, err := mint(key, *n)
	if err != nil {
		return err
	}
	reqs := make([]*authv3.CheckRequest, len(toks))
	for i, t := range toks {
		reqs[i] = request(i, t)
	}
	toks = nil

	base := liveHeap()
	fmt.Printf("baseline (tokens and requests in memory): live heap %.1f MB\n", base/1e6)
	var users float64
	for _, cache := range []int{0, 100000} {
		dir, err := os.MkdirTemp("", "jwtauthz-memprofile")
		if err != nil {
			return err
		}
		prof := ""
		if cache > 0 {
			prof = *profile
		}
		heap, err := measure(dir, cache, &key.PublicKey, reqs, base, prof)
		os.RemoveAll(dir)
		if err != nil {
			return err
		}
		fmt.Printf("cache.max_entries %6d: live heap above baseline %.1f MB (%.0f bytes per user)\n",
			cache, heap/1e6, heap/float64(len(reqs)))
		if cache == 0 {
			users = heap
		} else {
			fmt.Printf("the cache's share: %.1f MB (%.0f bytes per cached token)\n", (heap-users)/1e6, (heap-users)/float64(len(reqs)))
		}
	}
	return nil
}

// measure returns the live heap, above base, of a server that has seen
// every request twice, and writes its heap profile to profile unless "".
// The server stays reachable until both are taken.
func measure(dir string, cacheEntries int, pub *ecdsa.PublicKey, reqs []*authv3.CheckRequest, base float64, profile string) (float64, error) {
	// The config serve would read, built by the same package.
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return 0, err
	}
	pemPath := filepath.Join(dir, "public.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return 0, err
	}
	cfg, err := config.Parse(fmt.Appendf(nil, `
store: {path: %q}
cache: {max_entries: %d}
providers:
  - name: es256
    issuer: %s
    algorithms: [ES256]
    pem_files: [%q]
    claim_headers: {x-auth-email: email}
`, filepath.Join(dir, "users.db"), cacheEntries, issuer, pemPath))
	if err != nil {
		return 0, err
	}
	provs, err := config.BuildProviders(cfg, config.BuildOptions{})
	if err != nil {
		return 0, err
	}
	db, err := config.OpenStore(cfg, nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	policy, err := config.Policy(cfg, provs)
	if err != nil {
		return 0, err
	}
	srv := authz.New(authz.Options{Users: db}, policy)
	for pass := range 2 {
		if err := checkAll(srv, reqs); err != nil {
			return 0, fmt.Errorf("pass %d: %w", pass+1, err)
		}
	}
	// The write-behind of the second pass rewrites every user's record in
	// one bbolt transaction: let it finish, so the figure is what stays.
	if err := db.Flush(); err != nil {
		return 0, err
	}
	heap := liveHeap() - base
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return 0, err
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			return 0, err
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
	}
	runtime.KeepAlive(srv)
	runtime.KeepAlive(db)
	return heap, nil
}

// checkAll sends every request once, from 64 goroutines, as Envoy's
// concurrent streams would (bbolt then batches the first logins).
func checkAll(srv *authz.Server, reqs []*authv3.CheckRequest) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					return
				}
				resp, err := srv.Check(context.Background(), reqs[i])
				if err == nil && resp.GetStatus().GetCode() != int32(codes.OK) {
					err = fmt.Errorf("request %d denied: %v", i, resp.GetDeniedResponse().GetBody())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func liveHeap() float64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapAlloc)
}

func mint(key *ecdsa.PrivateKey, n int) ([]string, error) {
	now := time.Now()
	out := make([]string, n)
	for i := range out {
		user := fmt.Sprintf("mem-%d", i)
		t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"username": user, "sub": "sub-" + user, "email": user + "@example.com",
			"iss": issuer, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
		s, err := t.SignedString(key)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

func request(i int, tok string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{
			Id: fmt.Sprint(i), Method: "GET", Path: "/api/v1/items", Host: "api.example.com", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{
				":authority": "api.example.com", ":method": "GET", ":path": "/api/v1/items", ":scheme": "https",
				"authorization": "Bearer " + tok, "accept": "application/json",
			},
		},
	}}}
}
