// Command memprofile attributes jwtauthz's memory with N known users and N
// cached tokens: it wires authz.Server and the bbolt store as `jwtauthz
// serve` does (one ES256 provider with an e-mail claim header, the default
// identity headers), sends N first logins from 64 goroutines straight to
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
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/claims"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/store"
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
	}
	return nil
}

// measure returns the live heap, above base, of a server that has seen
// every request twice, and writes its heap profile to profile unless "".
// The server stays reachable until both are taken.
func measure(dir string, cacheEntries int, pub *ecdsa.PublicKey, reqs []*authv3.CheckRequest, base float64, profile string) (float64, error) {
	db, err := store.Open(store.Options{Path: dir + "/users.db"})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	schema, err := claims.Compile("")
	if err != nil {
		return 0, err
	}
	v := token.NewVerifier(token.Options{
		Provider:   "es256",
		Issuer:     issuer,
		Algorithms: []string{"ES256"},
		Leeway:     30 * time.Second,
		Keys:       keys.NewStatic(keys.NewSet([]keys.Key{{Public: pub}}, 1)),
		Schema:     schema,
	})
	router, err := token.NewRouter([]*token.Verifier{v})
	if err != nil {
		return 0, err
	}
	srv := authz.New(authz.Options{
		Verifier: router,
		Users:    db,
		Headers: authz.IdentityHeaders{
			User: "x-auth-user", UserID: "x-auth-user-id", Provider: "x-auth-provider", StripPrefix: "x-auth-",
		},
		ClaimHeaders:         map[string][]authz.ClaimHeader{"es256": {{Header: "x-auth-email", Claim: "email"}}},
		ForwardAuthorization: true,
		CacheMaxEntries:      cacheEntries,
	})
	for pass := range 2 {
		if err := checkAll(srv, reqs); err != nil {
			return 0, fmt.Errorf("pass %d: %w", pass+1, err)
		}
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
