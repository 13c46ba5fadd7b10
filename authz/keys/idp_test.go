package keys_test

import (
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/internal/signing"
)

// idp is an identity provider's endpoints on a real loopback HTTP server:
// documents a test can change, answered with 304 when the request's
// If-None-Match or If-Modified-Since matches, and a record of the requests.
//
// Create it outside a synctest bubble: its goroutines wait on the network,
// which a bubble's clock does not wait for.
type idp struct {
	*httptest.Server
	mu      sync.Mutex
	pages   map[string]page
	hits    map[string]int
	headers map[string][]http.Header // path -> request headers, in order
	hold    chan struct{}            // when non-nil, every request waits for it to close
}

// page is one document and how it is served.
type page struct {
	status             int // default 200
	body               []byte
	etag, lastModified string
}

func newIDP(t *testing.T) *idp {
	p := &idp{pages: map[string]page{}, hits: map[string]int{}, headers: map[string][]http.Header{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.hits[r.URL.Path]++
	p.headers[r.URL.Path] = append(p.headers[r.URL.Path], r.Header.Clone())
	pg, ok := p.pages[r.URL.Path]
	hold := p.hold
	p.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if pg.etag != "" {
		w.Header().Set("ETag", pg.etag)
	}
	if pg.lastModified != "" {
		w.Header().Set("Last-Modified", pg.lastModified)
	}
	if pg.status == 0 || pg.status == http.StatusOK {
		inm, ims := r.Header.Get("If-None-Match"), r.Header.Get("If-Modified-Since")
		if (pg.etag != "" && inm == pg.etag) || (inm == "" && pg.lastModified != "" && ims == pg.lastModified) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if pg.status != 0 {
		w.WriteHeader(pg.status)
	}
	w.Write(pg.body)
}

func (p *idp) set(path string, pg page) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pages[path] = pg
}

func (p *idp) fetches(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[path]
}

func (p *idp) lastHeaders(path string) http.Header {
	p.mu.Lock()
	defer p.mu.Unlock()
	hs := p.headers[path]
	if len(hs) == 0 {
		return nil
	}
	return hs[len(hs)-1]
}

// holdRequests makes every request wait until the returned function is
// called.
func (p *idp) holdRequests() (release func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	p.hold = ch
	p.mu.Unlock()
	return sync.OnceFunc(func() {
		p.mu.Lock()
		p.hold = nil
		p.mu.Unlock()
		close(ch)
	})
}

// bubbleClient is an HTTP client for use inside a synctest bubble: without
// keep-alive, no idle connection waits on the network between fetches.
func bubbleClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// jwk describes a key as a JWK Set member, with extra members (kid, use,
// alg, x5c, ...).
func jwk(t *testing.T, key crypto.Signer, members map[string]any) map[string]any {
	t.Helper()
	j, err := signing.PublicJWK(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(j)
	var m map[string]any
	json.Unmarshal(b, &m)
	for k, v := range members {
		m[k] = v
	}
	return m
}

func jwks(t *testing.T, ks ...map[string]any) []byte {
	t.Helper()
	if ks == nil {
		ks = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": ks})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func generate(t *testing.T, alg string) crypto.Signer {
	t.Helper()
	k, err := signing.Generate(alg, 0)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mint signs claims with key, with the given header members besides alg
// and typ. iat and exp default to now and an hour later.
func mint(t *testing.T, key crypto.Signer, alg string, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": "alice", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	s, err := signing.Sign(jwt.GetSigningMethod(alg), key, c, header)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifier verifies tokens against src as a provider would, with sub as
// the username and no claims schema.
func verifier(src token.KeySource, algs ...string) *token.Verifier {
	return token.NewVerifier(token.Options{Provider: "idp", Algorithms: algs, UsernameClaim: "sub", Keys: src})
}

// servingK1 starts an identity provider whose /jwks holds key as kid "k1".
func servingK1(t *testing.T, key crypto.Signer) *idp {
	t.Helper()
	p := newIDP(t)
	p.set("/jwks", page{body: jwks(t, jwk(t, key, map[string]any{"kid": "k1"}))})
	return p
}

// bubbleRemote reads p's /jwks from inside a synctest bubble, with opts
// besides; it has fetched the set once.
func bubbleRemote(t *testing.T, p *idp, opts keys.RemoteOptions) *keys.Remote {
	t.Helper()
	opts.URL, opts.Client = p.URL+"/jwks", bubbleClient()
	r := keys.NewRemote(opts)
	mustRefresh(t, r)
	return r
}

func mustRefresh(t *testing.T, r *keys.Remote) {
	t.Helper()
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}
