// Command floor is the load run's floor: an Envoy ext_authz server that
// allows every Check without looking at it, on the same gRPC server set-up
// as `jwtauthz serve` (grpc.NewServer() with its defaults, health and
// reflection). What jwtauthz costs above it is what jwtauthz adds to the
// gRPC hop that no ext_authz server can avoid.
//
//	go run ./bench/floor --listen 127.0.0.1:0
//
// It logs one JSON line {"msg":"floor serving","grpc":"ADDR"} on stderr once
// it listens, and stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// allow answers every Check with status OK and an ok_response without
// headers: the least any ext_authz server can send back.
type allow struct {
	authv3.UnimplementedAuthorizationServer
}

func (allow) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status:       &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:9001", "gRPC listen address (port 0 picks a free one)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	gs := grpc.NewServer() // the defaults, as in cmd/jwtauthz/serve.go
	authv3.RegisterAuthorizationServer(gs, allow{})
	hs := health.NewServer() // SERVING for "" from the start
	hs.SetServingStatus("envoy.service.auth.v3.Authorization", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)

	line, _ := json.Marshal(struct {
		Msg  string `json:"msg"`
		GRPC string `json:"grpc"`
	}{"floor serving", lis.Addr().String()})
	fmt.Fprintln(os.Stderr, string(line))

	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		gs.GracefulStop()
		return nil
	}
}
