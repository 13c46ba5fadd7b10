package main

import (
	"context"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/jwtauthz/jwtauthz/internal/servetest"
	"github.com/jwtauthz/jwtauthz/internal/signing"
)

// otlpReceiver is a real OTLP/gRPC trace collector endpoint: it keeps the
// spans it is sent.
type otlpReceiver struct {
	collectorpb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (r *otlpReceiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) all() []*tracepb.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...)
}

// startOTLP serves an OTLP receiver on loopback and points the OTEL_*
// variables of this process at it, with a short batch delay.
func startOTLP(t *testing.T) *otlpReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{}
	gs := grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(gs, r)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	return r
}

// checkWith sends a Check with a token and extra headers.
func checkWith(t *testing.T, cc *checkClient, tok string, extra map[string]string) *authv3.CheckResponse {
	t.Helper()
	h := map[string]string{":method": "GET", ":path": "/api", ":authority": "example.com", "authorization": "Bearer " + tok}
	for k, v := range extra {
		h[k] = v
	}
	resp, err := cc.c.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api", Headers: h}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func spanAttrs(s *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, kv := range s.GetAttributes() {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		case v.GetIntValue() != 0:
			m[kv.GetKey()] = "int"
		default:
			m[kv.GetKey()] = strings.TrimSpace(v.String())
		}
	}
	return m
}

func TestTracing(t *testing.T) {
	recv := startOTLP(t)
	e := servetest.New(t)
	doc, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	e.WriteConfig(t, string(doc)+"    claim_headers: {x-auth-email: email}\ntracing: {enabled: true}\n")
	svc := startEnv(t, e, serviceOptions{getenv: os.Getenv})
	cc := dialCheck(t, svc.grpcAddr.String())
	tok, err := signing.Mint(e.Key, "alice", signing.Options{TTL: time.Hour, Now: time.Now(), Claims: map[string]any{"email": "alice-secret@example.com"}})
	if err != nil {
		t.Fatal(err)
	}

	const (
		w3cTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		w3cSpan  = "00f067aa0ba902b7"
		b3Trace  = "80f198ee56343ba864fe8b2a57d3eff7"
		b3Span   = "e457b5a2e4d86bd1"
		b3sTrace = "a3ce929d0e0e47364bf92f3577b34da6"
		b3sSpan  = "05e3ac9a4f6e3b90"
	)
	cases := []struct {
		name          string
		headers       map[string]string
		trace, parent string
	}{
		{"W3C traceparent", map[string]string{"traceparent": "00-" + w3cTrace + "-" + w3cSpan + "-01"}, w3cTrace, w3cSpan},
		{"B3 multi header", map[string]string{"x-b3-traceid": b3Trace, "x-b3-spanid": b3Span, "x-b3-sampled": "1"}, b3Trace, b3Span},
		{"B3 single header", map[string]string{"b3": b3sTrace + "-" + b3sSpan + "-1"}, b3sTrace, b3sSpan},
	}
	for _, c := range cases {
		if resp := checkWith(t, cc, tok, c.headers); resp.GetStatus().GetCode() != int32(codes.OK) {
			t.Fatalf("%s: Check %v", c.name, resp.GetStatus())
		}
	}
	var checkSpans, userSpans []*tracepb.Span
	eventually(t, 5*time.Second, "spans exported", func() bool {
		checkSpans, userSpans = nil, nil
		for _, s := range recv.all() {
			switch s.GetName() {
			case "jwtauthz.Check":
				checkSpans = append(checkSpans, s)
			case "jwtauthz.store.create_user":
				userSpans = append(userSpans, s)
			}
		}
		return len(checkSpans) >= len(cases) && len(userSpans) >= 1
	})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, s := range checkSpans {
				if hex.EncodeToString(s.GetTraceId()) != c.trace {
					continue
				}
				if got := hex.EncodeToString(s.GetParentSpanId()); got != c.parent {
					t.Errorf("parent span %s, want %s", got, c.parent)
				}
				if s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
					t.Errorf("kind %v, want server", s.GetKind())
				}
				a := spanAttrs(s)
				for k, want := range map[string]string{"jwtauthz.decision": "allow", "jwtauthz.reason": "ok", "jwtauthz.provider": "default", "jwtauthz.route": "default", "jwtauthz.user_id": "1"} {
					if a[k] != want {
						t.Errorf("attribute %s = %q, want %q (all: %v)", k, a[k], want, a)
					}
				}
				if _, ok := a["jwtauthz.new_user"]; !ok {
					t.Errorf("no jwtauthz.new_user attribute: %v", a)
				}
				return
			}
			t.Errorf("no jwtauthz.Check span in trace %s", c.trace)
		})
	}
	// The first login's durable write is a child of the first Check's span.
	first := userSpans[0]
	if hex.EncodeToString(first.GetTraceId()) != w3cTrace {
		t.Errorf("create_user span in trace %x, want the first Check's %s", first.GetTraceId(), w3cTrace)
	}
	var firstCheck *tracepb.Span
	for _, s := range checkSpans {
		if hex.EncodeToString(s.GetTraceId()) == w3cTrace {
			firstCheck = s
		}
	}
	if firstCheck != nil && string(first.GetParentSpanId()) != string(firstCheck.GetSpanId()) {
		t.Errorf("create_user's parent %x, want the Check span %x", first.GetParentSpanId(), firstCheck.GetSpanId())
	}
	// No span carries the token or a claim value.
	for _, s := range recv.all() {
		for _, kv := range s.GetAttributes() {
			v := kv.GetValue().String()
			for _, secret := range []string{tok, strings.Split(tok, ".")[1], strings.Split(tok, ".")[2], "alice-secret", "alice@"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %s attribute %s holds %q", s.GetName(), kv.GetKey(), secret)
				}
			}
		}
	}
}

func TestTracingOffExportsNothing(t *testing.T) {
	recv := startOTLP(t)
	e := servetest.New(t)
	svc := startEnv(t, e, serviceOptions{getenv: os.Getenv})
	cc := dialCheck(t, svc.grpcAddr.String())
	tok := e.Mint(t, "alice", time.Hour)
	for range 5 {
		checkWith(t, cc, tok, map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	}
	if err := svc.shutdown(0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // four batch delays
	if n := len(recv.all()); n != 0 {
		t.Errorf("tracing off exported %d spans, want none", n)
	}
}
