package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jwtauthz/jwtauthz/internal/whoami"
)

// runWhoami serves a stand-in upstream for trying jwtauthz behind Envoy: it
// answers every request with the identity headers that reached it, as JSON.
// It never echoes the authorization header, only whether one arrived.
func runWhoami(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "whoami", "[--listen HOST:PORT] [flags]")
	listen := fs.String("listen", "127.0.0.1:8000", "HTTP listen address (envoy.yaml's upstream cluster)")
	prefix := fs.String("prefix", "x-auth-", "echo every request header whose name starts with this (identity_headers.strip_prefix)")
	var extra stringList
	fs.Var(&extra, "header", "also echo this request header, repeatable (e.g. a claim header outside the prefix)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("whoami: unexpected argument %q", fs.Arg(0))}
	}
	names := []string{whoami.PayloadHeader}
	for _, h := range extra {
		names = append(names, strings.ToLower(h))
	}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("whoami: listen %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           whoami.Handler(strings.ToLower(*prefix), names),
		ReadHeaderTimeout: 5 * time.Second,
	}
	// Tests and scripts read the bound address from this line.
	fmt.Fprintf(env.stdout, "listening on %s\n", lis.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("whoami: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("whoami: shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("whoami: %w", err)
	}
	return nil
}
