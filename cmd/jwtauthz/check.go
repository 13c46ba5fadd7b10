package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/jwtauthz/jwtauthz/internal/extauthz"
)

// runCheck sends one CheckRequest and prints the decision. It speaks
// plaintext gRPC, as Envoy does to an ext_authz cluster on the same host or
// pod; it is meant for loopback and in-cluster addresses.
func runCheck(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "check", "--addr HOST:PORT [flags]")
	var o extauthz.Request
	var headers stringList
	fs.StringVar(&o.Addr, "addr", "", "ext_authz gRPC address HOST:PORT (plaintext, as Envoy calls a local cluster)")
	fs.StringVar(&o.Token, "token", "", "bearer token, sent as the authorization header")
	fs.Var(&headers, "header", "request header 'name: value', repeatable (name lowercased, value trimmed)")
	var cookies, exts stringList
	fs.Var(&exts, "context-extension", "context extension 'key=value' of Envoy's per-route ExtAuthzPerRoute, repeatable")
	fs.Var(&cookies, "cookie", "cookie 'name=value', repeatable; all go in one cookie header, as a browser sends them")
	fs.StringVar(&o.Method, "method", "GET", "HTTP method")
	fs.StringVar(&o.Path, "path", "/", "HTTP path, with any query string")
	fs.StringVar(&o.Host, "host", "", "HTTP host (:authority) (default the host of --addr, or example.com)")
	timeout := fs.Duration("timeout", 5*time.Second, "deadline for the whole call")
	asJSON := fs.Bool("json", false, "print the whole CheckResponse as protojson")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("check: unexpected arguments %q", fs.Args())}
	}
	if o.Addr == "" {
		return &exitError{code: 2, err: errors.New("check: --addr is required")}
	}
	if *timeout <= 0 {
		return &exitError{code: 2, err: fmt.Errorf("check: --timeout must be positive, got %v", *timeout)}
	}
	o.Headers = headers
	o.Cookies = cookies
	for _, kv := range exts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return &exitError{code: 2, err: fmt.Errorf("check: --context-extension %q: want key=value", kv)}
		}
		if o.ContextExtensions == nil {
			o.ContextExtensions = map[string]string{}
		}
		o.ContextExtensions[k] = v
	}

	req, err := extauthz.New(o)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("check: %w", err)}
	}
	resp, err := sendCheck(ctx, o.Addr, req, *timeout)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if *asJSON {
		b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(resp)
		if err != nil {
			return fmt.Errorf("encode response: %w", err)
		}
		fmt.Fprintln(env.stdout, string(b))
	} else {
		extauthz.Print(env.stdout, resp)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		return &exitError{code: 1} // the decision is already printed
	}
	return nil
}

// sendCheck makes one Authorization/Check call over a fresh plaintext
// connection. Errors name the address.
func sendCheck(ctx context.Context, addr string, req *authv3.CheckRequest, timeout time.Duration) (*authv3.CheckResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req)
	if err != nil {
		if s, ok := status.FromError(err); ok {
			if s.Code() == codes.DeadlineExceeded {
				return nil, fmt.Errorf("check %s: no answer within %v", addr, timeout)
			}
			return nil, fmt.Errorf("check %s: %s: %s", addr, s.Code(), s.Message())
		}
		return nil, fmt.Errorf("check %s: %w", addr, err)
	}
	return resp, nil
}
