package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
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
	names := []string{payloadHeader}
	for _, h := range extra {
		names = append(names, strings.ToLower(h))
	}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("whoami: listen %s: %w", *listen, err)
	}
	srv := &http.Server{
		Handler:           whoamiHandler(strings.ToLower(*prefix), names),
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

// payloadHeader is the conventional name for identity_headers.payload;
// whoami echoes it and decodes it when it is present.
const payloadHeader = "x-jwt-payload"

// whoamiReply is the JSON body whoami answers with.
type whoamiReply struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Headers holds the identity headers received, names lowercased, values
	// of a repeated header joined with ", " (a repeat means something upstream
	// appended instead of overwriting).
	Headers map[string]string `json:"headers"`
	// Authorization says whether an authorization header arrived; its value
	// (the token) is never echoed.
	Authorization bool `json:"authorization_present"`
	// Claims is x-jwt-payload decoded (base64url of the claims JSON), when
	// it is present and decodes.
	Claims json.RawMessage `json:"claims,omitempty"`
}

func whoamiHandler(prefix string, names []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply := whoamiReply{
			Method:        r.Method,
			Path:          r.URL.Path,
			Headers:       map[string]string{},
			Authorization: r.Header.Get("Authorization") != "",
		}
		for name, vs := range r.Header {
			lower := strings.ToLower(name)
			if lower == "authorization" {
				continue
			}
			if (prefix != "" && strings.HasPrefix(lower, prefix)) || slices.Contains(names, lower) {
				reply.Headers[lower] = strings.Join(vs, ", ")
			}
		}
		if p := r.Header.Get(payloadHeader); p != "" {
			reply.Claims = decodePayload(p)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(reply)
	})
}

// decodePayload decodes a base64url (padded or not) JSON object, or returns
// nil when it is not one.
func decodePayload(s string) json.RawMessage {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || !json.Valid(b) || !strings.HasPrefix(strings.TrimSpace(string(b)), "{") {
		return nil
	}
	return b
}
