package authz_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/claims"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/route"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/internal/signing"
	"github.com/jwtauthz/jwtauthz/internal/tracing"
	"github.com/jwtauthz/jwtauthz/store"
	"github.com/jwtauthz/jwtauthz/store/bolt"
)

// now is the time tokens are minted at; clock is the injected clock of the
// servers and verifiers, which a test may move (tests that do are not
// parallel).
var (
	now   = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	clock atomic.Pointer[time.Time]
)

func init() { clock.Store(&now) }

// setClock moves the injected clock for the rest of the test.
func setClock(t testing.TB, at time.Time) {
	clock.Store(&at)
	t.Cleanup(func() { clock.Store(&now) })
}

func cacheEntries(off bool) int {
	if off {
		return 0
	}
	return 1000
}

var (
	rsa4096Once sync.Once
	rsa4096     *rsa.PrivateKey
)

// rs512Key is a 4096-bit key, as in the original setup; generated once per
// test binary because it takes a second or two.
func rs512Key(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	rsa4096Once.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 4096)
		if err != nil {
			panic(err)
		}
		rsa4096 = k
	})
	return rsa4096
}

func rsaKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// mint signs claims with key and method; header entries are added as given.
func mint(t testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims, header map[string]any) string {
	t.Helper()
	s, err := signing.Sign(method, key, c, header)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimsFor returns valid claims for username as of now.
func claimsFor(username string) jwt.MapClaims {
	return jwt.MapClaims{
		"username": username,
		"sub":      "sub-" + username,
		"iat":      now.Unix(),
		"exp":      now.Add(time.Hour).Unix(),
	}
}

// fixture is one running Check server with its parts.
type fixture struct {
	client authv3.AuthorizationClient
	db     *store.Engine
	dbPath string
}

type fixtureOptions struct {
	verifier     authz.Verifier
	headers      *authz.IdentityHeaders
	claimHeaders map[string][]authz.ClaimHeader
	noForward    bool
	dbPath       string
	noCache      bool // the cache is on by default, as in production
	metrics      *authz.Metrics
	tokenSources []authz.TokenSource
	routes       *route.Table
	providers    []string     // default: "default"
	tracer       trace.Tracer // nil: tracing off
}

// identityHeaders are the config's defaults (config.Default).
func identityHeaders() authz.IdentityHeaders {
	return authz.IdentityHeaders{User: "x-auth-user", UserID: "x-auth-user-id", Provider: "x-auth-provider", StripPrefix: "x-auth-"}
}

// singleProvider builds a router for one provider named "default" whose keys
// are ks, with the default claims schema.
func singleProvider(t testing.TB, o token.Options, src token.KeySource) *token.Router {
	t.Helper()
	schema, err := claims.Compile("")
	if err != nil {
		t.Fatal(err)
	}
	if o.Provider == "" {
		o.Provider = "default"
	}
	if o.Algorithms == nil {
		o.Algorithms = []string{"RS512"}
	}
	o.Keys = src
	o.Schema = schema
	o.Now = func() time.Time { return *clock.Load() }
	r, err := token.NewRouter([]*token.Verifier{token.NewVerifier(o)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func staticKeys(pubs ...any) *keys.Static {
	ks := make([]keys.Key, len(pubs))
	for i, p := range pubs {
		ks[i] = keys.Key{Public: p}
	}
	return keys.NewStatic(keys.NewSet(ks, 1))
}

// start runs a Check server over bufconn with a real bbolt store.
func start(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	if o.dbPath == "" {
		o.dbPath = filepath.Join(t.TempDir(), "users.db")
	}
	db, err := bolt.Open(bolt.Options{Path: o.dbPath})
	if err != nil {
		t.Fatal(err)
	}
	h := identityHeaders()
	if o.headers != nil {
		h = *o.headers
	}
	opts := authz.Options{
		Users:   db,
		Metrics: o.metrics,
		Now:     func() time.Time { return *clock.Load() },
	}
	if o.tracer != nil {
		opts.Tracer, opts.Propagator = o.tracer, tracing.Propagator()
	}
	srv := authz.New(opts, &authz.Policy{
		Verifier:             o.verifier,
		Headers:              h,
		ClaimHeaders:         o.claimHeaders,
		Providers:            providersOr(o.providers),
		ForwardAuthorization: !o.noForward,
		CacheMaxEntries:      cacheEntries(o.noCache),
		TokenSources:         o.tokenSources,
		Routes:               o.routes,
	})
	conn := serveBufconn(t, func(gs *grpc.Server) { authv3.RegisterAuthorizationServer(gs, srv) })
	t.Cleanup(func() { db.Close() })
	return &fixture{client: authv3.NewAuthorizationClient(conn), db: db, dbPath: o.dbPath}
}

func providersOr(names []string) []string {
	if len(names) == 0 {
		return []string{"default"}
	}
	return names
}

// serveBufconn runs a gRPC server over bufconn (the real transport, no
// port) with what register adds, and returns a client connection to it.
// Messages up to 16 MiB pass, so oversized inputs reach the handler.
func serveBufconn(t testing.TB, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(4 << 20)
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(16 << 20))
	register(gs)
	go gs.Serve(lis)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	return conn
}

// request builds a CheckRequest shaped as Envoy sends it, with headers in
// the headers map.
func request(headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": "GET", ":path": "/api", ":authority": "example.com", ":scheme": "http"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-1", Method: "GET", Path: "/api", Host: "example.com", Scheme: "http", Protocol: "HTTP/1.1", Headers: h,
		}},
	}}
}

// requestHeaderMap builds the header_map form (encode_raw_headers: true).
func requestHeaderMap(headers [][2]string) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	for _, kv := range append([][2]string{{":method", "GET"}, {":path", "/api"}}, headers...) {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-2", Method: "GET", Path: "/api", HeaderMap: hm,
		}},
	}}
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

func (f *fixture) check(t testing.TB, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.client.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check returned a gRPC error, want a CheckResponse: %v", err)
	}
	return resp
}

// headerMap flattens a response's headers.
func headerMap(hs []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return m
}

func statusOK() *status.Status { return &status.Status{Code: int32(codes.OK)} }
