package main

import (
	"context"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jwtauthz/jwtauthz/internal/extauthz"
)

// recordingAuthz is an ext_authz server that records each request and
// answers with a canned response; with a nil response it never answers.
type recordingAuthz struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse

	mu  sync.Mutex
	got []*authv3.CheckRequest
}

func (s *recordingAuthz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	s.mu.Lock()
	s.got = append(s.got, proto.Clone(req).(*authv3.CheckRequest))
	s.mu.Unlock()
	if s.resp == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.resp, nil
}

func (s *recordingAuthz) requests() []*authv3.CheckRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

// startAuthz serves a recordingAuthz on a loopback port.
func startAuthz(t *testing.T, resp *authv3.CheckResponse) (addr string, srv *recordingAuthz) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = &recordingAuthz{resp: resp}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return lis.Addr().String(), srv
}

func headerOption(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		Append:       wrapperspb.Bool(false),
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func allowResponse(t *testing.T) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         []*corev3.HeaderValueOption{headerOption("x-auth-user", "alice"), headerOption("x-auth-provider", "default")},
			HeadersToRemove: []string{"x-auth-foo"},
		}},
		DynamicMetadata: mustStruct(t, map[string]any{"user": "alice", "user_id": "7", "provider": "default", "new_user": true}),
	}
}

func denyResponse(code codes.Code, httpStatus typev3.StatusCode, msg string) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: msg},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: httpStatus},
			Headers: []*corev3.HeaderValueOption{
				headerOption("www-authenticate", `Bearer realm="jwtauthz", error="invalid_token", error_description="`+msg+`"`),
				headerOption("content-type", "application/json"),
			},
			Body: `{"error":"invalid_token","detail":"` + msg + `"}`,
		}},
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		resp     func(t *testing.T) *authv3.CheckResponse
		args     []string
		wantCode int
		wantOut  string
	}{
		{
			name:     "allow",
			resp:     allowResponse,
			args:     []string{"--token", "tok"},
			wantCode: 0,
			wantOut: `decision: allow
grpc status: OK
set header:  x-auth-user: alice
set header:  x-auth-provider: default
remove header: x-auth-foo
dynamic metadata: {"new_user":true,"provider":"default","user":"alice","user_id":"7"}
`,
		},
		{
			name: "unauthenticated",
			resp: func(*testing.T) *authv3.CheckResponse {
				return denyResponse(codes.Unauthenticated, typev3.StatusCode_Unauthorized, "token is expired")
			},
			args:     []string{"--token", "tok"},
			wantCode: 1,
			wantOut: `decision: deny
grpc status: UNAUTHENTICATED: token is expired
http status: 401
set header:  www-authenticate: Bearer realm="jwtauthz", error="invalid_token", error_description="token is expired"
set header:  content-type: application/json
body: {"error":"invalid_token","detail":"token is expired"}
`,
		},
		{
			name: "permission denied",
			resp: func(*testing.T) *authv3.CheckResponse {
				return denyResponse(codes.PermissionDenied, typev3.StatusCode_Forbidden, "user is deactivated")
			},
			wantCode: 1,
			wantOut: `decision: deny
grpc status: PERMISSION_DENIED: user is deactivated
http status: 403
set header:  www-authenticate: Bearer realm="jwtauthz", error="invalid_token", error_description="user is deactivated"
set header:  content-type: application/json
body: {"error":"invalid_token","detail":"user is deactivated"}
`,
		},
		{
			name: "unavailable",
			resp: func(*testing.T) *authv3.CheckResponse {
				return &authv3.CheckResponse{
					Status: &rpcstatus.Status{Code: int32(codes.Unavailable), Message: "no keys"},
					HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
						Status:  &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
						Headers: []*corev3.HeaderValueOption{headerOption("retry-after", "5")},
					}},
				}
			},
			wantCode: 1,
			wantOut: `decision: deny
grpc status: UNAVAILABLE: no keys
http status: 503
set header:  retry-after: 5
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, srv := startAuthz(t, tt.resp(t))
			stdout, stderr, code := runForTest(t, append([]string{"check", "--addr", addr}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit: got %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			if diff := cmp.Diff(tt.wantOut, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if stderr != "" {
				t.Errorf("stderr: got %q, want nothing", stderr)
			}
			if n := len(srv.requests()); n != 1 {
				t.Errorf("server got %d requests, want 1", n)
			}
		})
	}
}

var (
	uuidPattern   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	streamPattern = regexp.MustCompile(`^[0-9]+$`)
)

func TestCheckRequestShape(t *testing.T) {
	peer := func(port uint32) *authv3.AttributeContext_Peer {
		return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
		}}}
	}
	want := func(method, path, host string, headers map[string]string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:      peer(54321),
			Destination: peer(8080),
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method:   method,
				Path:     path,
				Host:     host,
				Scheme:   "http",
				Protocol: "HTTP/1.1",
				Headers:  headers,
			}},
		}}
	}
	tests := []struct {
		name string
		args []string
		want *authv3.CheckRequest
	}{
		{
			name: "defaults",
			want: want("GET", "/", "127.0.0.1", map[string]string{
				":method": "GET", ":path": "/", ":authority": "127.0.0.1", ":scheme": "http",
				"x-forwarded-proto": "http",
			}),
		},
		{
			name: "everything",
			args: []string{
				"--token", "eyJ.a.b", "--method", "POST", "--path", "/api/v1?x=1", "--host", "api.example.com",
				"--header", "X-Custom:  spaced value  ", "--header", "Accept: application/json",
				"--header", "X-Multi: a", "--header", "x-multi: b", "--header", "X-Colon: a:b",
			},
			want: want("POST", "/api/v1?x=1", "api.example.com", map[string]string{
				":method": "POST", ":path": "/api/v1?x=1", ":authority": "api.example.com", ":scheme": "http",
				"x-forwarded-proto": "http",
				"authorization":     "Bearer eyJ.a.b",
				"x-custom":          "spaced value",
				"accept":            "application/json",
				"x-multi":           "a,b",
				"x-colon":           "a:b",
			}),
		},
		{
			name: "context extensions",
			args: []string{"--context-extension", "route=billing", "--context-extension", "tier=gold=x"},
			want: func() *authv3.CheckRequest {
				r := want("GET", "/", "127.0.0.1", map[string]string{
					":method": "GET", ":path": "/", ":authority": "127.0.0.1", ":scheme": "http",
					"x-forwarded-proto": "http",
				})
				r.Attributes.ContextExtensions = map[string]string{"route": "billing", "tier": "gold=x"}
				return r
			}(),
		},
		{
			name: "cookies in one header",
			args: []string{"--cookie", "access_token=eyJ.a.b", "--cookie", "theme=dark"},
			want: want("GET", "/", "127.0.0.1", map[string]string{
				":method": "GET", ":path": "/", ":authority": "127.0.0.1", ":scheme": "http",
				"x-forwarded-proto": "http",
				"cookie":            "access_token=eyJ.a.b; theme=dark",
			}),
		},
		{
			name: "header replaces the token",
			args: []string{"--token", "t1", "--header", "Authorization: Basic dXNlcg=="},
			want: want("GET", "/", "127.0.0.1", map[string]string{
				":method": "GET", ":path": "/", ":authority": "127.0.0.1", ":scheme": "http",
				"x-forwarded-proto": "http",
				"authorization":     "Basic dXNlcg==",
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, srv := startAuthz(t, allowResponse(t))
			before := time.Now()
			if _, stderr, code := runForTest(t, append([]string{"check", "--addr", addr}, tt.args...)...); code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("server got %d requests, want 1", len(reqs))
			}
			got := reqs[0]
			http := got.GetAttributes().GetRequest().GetHttp()
			if !streamPattern.MatchString(http.GetId()) {
				t.Errorf("id: got %q, want a decimal stream ID", http.GetId())
			}
			if rid := http.GetHeaders()["x-request-id"]; !uuidPattern.MatchString(rid) {
				t.Errorf("x-request-id: got %q, want a version 4 UUID", rid)
			}
			if ts := got.GetAttributes().GetRequest().GetTime().AsTime(); ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
				t.Errorf("request time: got %v, want about now", ts)
			}
			// The random and time-dependent fields are checked; compare the rest.
			http.Id = ""
			delete(http.Headers, "x-request-id")
			got.Attributes.Request.Time = nil
			if diff := cmp.Diff(tt.want, got, protocmp.Transform()); diff != "" {
				t.Errorf("CheckRequest (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckJSON(t *testing.T) {
	tests := []struct {
		name     string
		resp     func(t *testing.T) *authv3.CheckResponse
		wantCode int
	}{
		{"allow", allowResponse, 0},
		{"deny", func(*testing.T) *authv3.CheckResponse {
			return denyResponse(codes.Unauthenticated, typev3.StatusCode_Unauthorized, "bad signature")
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.resp(t)
			addr, _ := startAuthz(t, want)
			stdout, stderr, code := runForTest(t, "check", "--addr", addr, "--json")
			if code != tt.wantCode {
				t.Errorf("exit: got %d, want %d; stderr:\n%s", code, tt.wantCode, stderr)
			}
			got := &authv3.CheckResponse{}
			if err := protojson.Unmarshal([]byte(stdout), got); err != nil {
				t.Fatalf("stdout is not a CheckResponse in protojson: %v\n%s", err, stdout)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("printed response (-want +got):\n%s", diff)
			}
			if strings.Contains(stdout, "decision:") {
				t.Errorf("--json output also has the readable form:\n%s", stdout)
			}
		})
	}
}

func TestCheckErrors(t *testing.T) {
	// An address where nothing listens: bind a port, then free it.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := lis.Addr().String()
	lis.Close()
	silentAddr, _ := startAuthz(t, nil)

	tests := []struct {
		name       string
		args       []string
		wantStderr []string
	}{
		{"nothing listening", []string{"--addr", deadAddr, "--timeout", "10s"}, []string{deadAddr, "Unavailable"}},
		{"timeout", []string{"--addr", silentAddr, "--timeout", "200ms"}, []string{silentAddr, "no answer within 200ms"}},
		{"no addr", nil, []string{"--addr is required"}},
		{"bad flag", []string{"--addr", deadAddr, "--nope"}, []string{"-nope", "Usage: jwtauthz check"}},
		{"header without colon", []string{"--addr", deadAddr, "--header", "x-foo"}, []string{`"x-foo"`, "name: value"}},
		{"header without name", []string{"--addr", deadAddr, "--header", ": v"}, []string{`": v"`}},
		{"pseudo-header", []string{"--addr", deadAddr, "--header", ":path: /admin"}, []string{`":path: /admin"`, "--path"}},
		{"path without slash", []string{"--addr", deadAddr, "--path", "api"}, []string{`"api"`, "start with /"}},
		{"zero timeout", []string{"--addr", deadAddr, "--timeout", "0s"}, []string{"--timeout"}},
		{"extra argument", []string{"--addr", deadAddr, "tok"}, []string{"unexpected arguments", "tok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runForTest(t, append([]string{"check"}, tt.args...)...)
			assertUsageError(t, stdout, stderr, code, tt.wantStderr...)
		})
	}
}

func TestCheckPrintResponse(t *testing.T) {
	tests := []struct {
		name string
		resp *authv3.CheckResponse
		want string
	}{
		{
			name: "no status is OK",
			resp: &authv3.CheckResponse{},
			want: "decision: allow\ngrpc status: OK\n",
		},
		{
			name: "the route that matched",
			resp: &authv3.CheckResponse{
				Status:          &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
				DynamicMetadata: mustStruct(t, map[string]any{"route": "orders-write"}),
				HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: 403}}},
			},
			want: "decision: deny\nroute: orders-write\ngrpc status: PERMISSION_DENIED\nhttp status: 403\ndynamic metadata: {\"route\":\"orders-write\"}\n",
		},
		{
			name: "deny without denied_response",
			resp: &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(codes.Unauthenticated)}},
			want: "decision: deny\ngrpc status: UNAUTHENTICATED\nhttp status: 403 (Envoy's default: no denied_response status)\n",
		},
		{
			name: "append modes and raw values",
			resp: &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					headerOption("x-set", "1"),
					{Header: &corev3.HeaderValue{Key: "x-appended", Value: "2"}, Append: wrapperspb.Bool(true)},
					{Header: &corev3.HeaderValue{Key: "x-default-action", Value: "3"}},
					{Header: &corev3.HeaderValue{Key: "x-absent", Value: "4"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
					{Header: &corev3.HeaderValue{Key: "x-raw", RawValue: []byte("5")}, Append: wrapperspb.Bool(false)},
				},
				ResponseHeadersToAdd:    []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-resp", Value: "6"}}},
				QueryParametersToSet:    []*corev3.QueryParameter{{Key: "q", Value: "7"}},
				QueryParametersToRemove: []string{"token"},
			}}},
			want: `decision: allow
grpc status: OK
set header:  x-set: 1
set header:  x-appended: 2 (append: true)
set header:  x-default-action: 3 (append_action: APPEND_IF_EXISTS_OR_ADD)
set header:  x-absent: 4 (append_action: ADD_IF_ABSENT)
set header:  x-raw: 5
response header: x-resp: 6
set query parameter: q=7
remove query parameter: token
`,
		},
		{
			name: "deprecated ok_response metadata, not HTML-escaped",
			resp: &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
					"b": structpb.NewStringValue("<&>"), "a": structpb.NewNumberValue(1),
				}},
			}}},
			want: "decision: allow\ngrpc status: OK\ndynamic metadata: {\"a\":1,\"b\":\"<&>\"}\n",
		},
		{
			name: "unknown status code",
			resp: &authv3.CheckResponse{Status: &rpcstatus.Status{Code: 99, Message: "odd"}},
			want: "decision: deny\ngrpc status: 99: odd\nhttp status: 403 (Envoy's default: no denied_response status)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			extauthz.Print(&b, tt.resp)
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckDefaultHost(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:9001", "127.0.0.1"},
		{"localhost:9001", "localhost"},
		{"[::1]:9001", "[::1]"},
		{":9001", "example.com"},
		{"no-port", "example.com"},
		{"", "example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			req, err := extauthz.New(extauthz.Request{Addr: tt.addr})
			if err != nil {
				t.Fatal(err)
			}
			http := req.GetAttributes().GetRequest().GetHttp()
			if http.GetHost() != tt.want || http.GetHeaders()[":authority"] != tt.want {
				t.Errorf("host, :authority: got %q, %q; want %q", http.GetHost(), http.GetHeaders()[":authority"], tt.want)
			}
		})
	}
}
