package authz_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/authz/route"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

// alwaysAllow is the floor: an ext_authz server that allows everything,
// on the same gRPC set-up, so a benchmark's ratio to it is what jwtauthz
// adds to the hop that no one can avoid.
type alwaysAllow struct {
	authv3.UnimplementedAuthorizationServer
}

func (alwaysAllow) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status:       &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}, nil
}

func benchClient(b *testing.B, srv authv3.AuthorizationServer) authv3.AuthorizationClient {
	b.Helper()
	return authv3.NewAuthorizationClient(serveBufconn(b, func(gs *grpc.Server) { authv3.RegisterAuthorizationServer(gs, srv) }))
}

type benchKey struct {
	name   string
	method jwt.SigningMethod
	priv   crypto.Signer
	pub    any
}

func benchKeys(b *testing.B) []benchKey {
	rs2048 := rsaKey(b)
	rs4096 := rs512Key(b)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	return []benchKey{
		{"RS256-2048", jwt.SigningMethodRS256, rs2048, &rs2048.PublicKey},
		{"RS512-4096", jwt.SigningMethodRS512, rs4096, &rs4096.PublicKey},
		{"ES256", jwt.SigningMethodES256, ec, &ec.PublicKey},
		{"EdDSA", jwt.SigningMethodEdDSA, edPriv, edPub},
	}
}

func runChecks(b *testing.B, client authv3.AuthorizationClient, req *authv3.CheckRequest) {
	b.Helper()
	b.ReportAllocs()
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Check(ctx, req)
		if err != nil || resp.GetStatus().GetCode() != int32(codes.OK) {
			b.Fatalf("Check: %v %v", err, resp.GetStatus())
		}
	}
}

// BenchmarkCheckFloor is the always-allow server, sent the same request as
// BenchmarkCheckCached (an RS512-4096 token).
func BenchmarkCheckFloor(b *testing.B) {
	k := benchKeys(b)[1]
	runChecks(b, benchClient(b, alwaysAllow{}), request(bearer(mint(b, k.method, k.priv, claimsFor("alice"), nil))))
}

// BenchmarkCheckCached repeats one token: the verified-token cache answers.
func BenchmarkCheckCached(b *testing.B) {
	k := benchKeys(b)[1] // RS512-4096: what a miss would cost most
	f := benchServer(b, k, false)
	runChecks(b, f, request(bearer(mint(b, k.method, k.priv, claimsFor("alice"), nil))))
}

// BenchmarkCheckUncached verifies the signature on every Check.
func BenchmarkCheckUncached(b *testing.B) {
	for _, k := range benchKeys(b) {
		b.Run(k.name, func(b *testing.B) {
			f := benchServer(b, k, true)
			runChecks(b, f, request(bearer(mint(b, k.method, k.priv, claimsFor("alice"), nil))))
		})
	}
}

// BenchmarkJWTParse is golang-jwt's Parse alone for each key: the cost of
// the signature check no verifier can avoid.
func BenchmarkJWTParse(b *testing.B) {
	for _, k := range benchKeys(b) {
		b.Run(k.name, func(b *testing.B) {
			tok := mint(b, k.method, k.priv, claimsFor("alice"), nil)
			p := jwt.NewParser(jwt.WithValidMethods([]string{k.method.Alg()}), jwt.WithoutClaimsValidation())
			keyFunc := func(*jwt.Token) (any, error) { return k.pub, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Parse(tok, keyFunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckFirstLogin creates a new user on every Check (ES256, so
// signing the pool stays quick). Checks run from 64 goroutines, as Envoy's
// concurrent streams do: a new user is durable before its allow, and bbolt's
// batch coalesces the concurrent creations into one fsync.
func BenchmarkCheckFirstLogin(b *testing.B) {
	k := benchKeys(b)[2]
	client := benchServer(b, k, false)
	pool := make(chan string, b.N)
	for i := range b.N {
		pool <- mint(b, k.method, k.priv, claimsFor(fmt.Sprintf("user-%d", i)), nil)
	}
	close(pool)
	b.ReportAllocs()
	b.SetParallelism(32) // x GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Check(context.Background(), request(bearer(<-pool)))
			if err != nil || !resp.GetDynamicMetadata().GetFields()["new_user"].GetBoolValue() {
				b.Errorf("Check: %v %v", err, resp.GetStatus())
				return
			}
		}
	})
}

func benchServer(b *testing.B, k benchKey, noCache bool) authv3.AuthorizationClient {
	b.Helper()
	f := start(b, fixtureOptions{
		verifier: singleProvider(b, token.Options{Algorithms: []string{k.method.Alg()}}, staticKeys(k.pub)),
		noCache:  noCache,
		dbPath:   filepath.Join(b.TempDir(), "bench.db"),
	})
	return f.client
}

// benchRoutes are n routes of mixed kinds (path prefixes, whole-path
// regexes, hosts, methods) that the benchmark's request matches none of,
// so every one is evaluated before default_route applies: the worst case.
func benchRoutes(b *testing.B, n int) *route.Table {
	b.Helper()
	specs := make([]route.Spec, n)
	for i := range specs {
		name := fmt.Sprintf("r%d", i)
		var m route.Match
		switch i % 4 {
		case 0:
			m.PathPrefixes = []string{fmt.Sprintf("/svc%d", i), fmt.Sprintf("/api/v1/svc%d", i)}
		case 1:
			m.PathRegex = fmt.Sprintf(`/api/v[0-9]+/items%d/[a-z0-9-]+`, i)
		case 2:
			m.Hosts = []string{fmt.Sprintf("svc%d.example.com", i), fmt.Sprintf("*.svc%d.example.net", i)}
		case 3:
			m.Methods = []string{"POST", "PUT"}
			m.PathPrefixes = []string{"/api"}
		}
		specs[i] = route.Spec{Rule: route.Rule{Name: name, Require: route.Require{Scopes: []string{"s" + name}}}, Match: m}
	}
	t, err := route.Compile(specs, route.Rule{})
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkCheckRoutes is BenchmarkCheckCached with no routes and with 100
// routes that all must be evaluated: what matching costs a cached Check.
func BenchmarkCheckRoutes(b *testing.B) {
	k := benchKeys(b)[2] // ES256: the token does not matter once cached
	tok := mint(b, k.method, k.priv, claimsFor("alice"), nil)
	for _, n := range []int{0, 100} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			o := fixtureOptions{
				verifier: singleProvider(b, token.Options{Algorithms: []string{k.method.Alg()}}, staticKeys(k.pub)),
				dbPath:   filepath.Join(b.TempDir(), "bench.db"),
			}
			if n > 0 {
				o.routes = benchRoutes(b, n)
			}
			req := request(bearer(tok))
			req.GetAttributes().GetRequest().GetHttp().Path = "/api/v1/items/42"
			runChecks(b, start(b, o).client, req)
		})
	}
}

// BenchmarkCheckTracing is BenchmarkCheckCached with tracing off (no
// tracer: the default) and on, every request sampled through a W3C
// traceparent, spans batched to an exporter that drops them: what the
// spans cost beside the export itself.
func BenchmarkCheckTracing(b *testing.B) {
	k := benchKeys(b)[2]
	tok := mint(b, k.method, k.priv, claimsFor("alice"), nil)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("tracing=%v", on), func(b *testing.B) {
			o := fixtureOptions{
				verifier: singleProvider(b, token.Options{Algorithms: []string{k.method.Alg()}}, staticKeys(k.pub)),
				dbPath:   filepath.Join(b.TempDir(), "bench.db"),
			}
			if on {
				o.tracer = tp.Tracer("bench")
			}
			req := request(bearer(tok))
			req.GetAttributes().GetRequest().GetHttp().GetHeaders()["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			runChecks(b, start(b, o).client, req)
		})
	}
}
