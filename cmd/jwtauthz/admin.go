package main

import (
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/jwtauthz/jwtauthz/admin"
	"github.com/jwtauthz/jwtauthz/config"
	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

// adminService is the health service name of the admin API.
var adminService = adminv1.UserAdmin_ServiceDesc.ServiceName

// startAdmin starts the admin gRPC API on cfg.Admin.Listen: UserAdmin,
// grpc.health.v1 (SERVING for "" and the UserAdmin service) and reflection.
// It returns once the listener is bound and serving has begun; it returns
// nil servers when admin.listen is "" (the API is off).
//
// The UserAdmin calls authenticate with the policy's verifier, which is
// the Check path's, and its required claims; a reload swaps the policy.
// Health and reflection need no token, as on the main listener, so that
// probes work; they reveal no user.
func startAdmin(cfg *config.Config, p admin.Policy, users admin.Users, logger *slog.Logger) (api *admin.Server, srv *grpc.Server, addr net.Addr, err error) {
	if cfg.Admin.Listen == "" {
		return nil, nil, nil, nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Admin.RequireClaims) == 0 {
		// admin.allow_any_verified_token said so; say what it means.
		logger.Warn("admin API open to every verified token (admin.allow_any_verified_token): every user of the mesh may list and deactivate users")
	}
	api, err = admin.New(admin.Options{Users: users, Policy: p, Logger: logger})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("config: %w", err)
	}
	lis, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
	}
	srv = grpc.NewServer()
	adminv1.RegisterUserAdminServer(srv, api)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(adminService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	go func() {
		if err := srv.Serve(lis); err != nil {
			logger.Error("admin gRPC server stopped", "err", err)
		}
	}()
	logger.Info("admin API serving", "admin", lis.Addr().String(), "require_claims", len(cfg.Admin.RequireClaims), "providers", cfg.Admin.Providers)
	return api, srv, lis.Addr(), nil
}

// stopAdmin stops the admin API gracefully, closing what is still open
// after timeout (a health Watch or reflection stream never ends by
// itself). A nil srv (the API off) is fine.
func stopAdmin(srv *grpc.Server, timeout time.Duration) {
	if srv == nil {
		return
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(timeout):
		srv.Stop()
		<-stopped
	}
}
