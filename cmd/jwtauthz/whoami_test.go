package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/jwtauthz/jwtauthz/internal/testlog"
	"github.com/jwtauthz/jwtauthz/internal/whoami"
)

// startWhoami runs whoami on a free loopback port and returns its base URL
// and a function that stops it and returns runWhoami's error.
func startWhoami(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &testlog.Buffer{}
	env := &cliEnv{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: out, stderr: io.Discard}
	errc := make(chan error, 1)
	go func() { errc <- runWhoami(ctx, env, append([]string{"--listen", "127.0.0.1:0"}, args...)) }()
	stop := func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("runWhoami did not return after its context was cancelled")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if addr, ok := strings.CutPrefix(strings.TrimSpace(out.String()), "listening on "); ok {
			return "http://" + addr, stop
		}
		select {
		case err := <-errc:
			t.Fatalf("runWhoami returned before listening: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop()
	t.Fatalf("no %q line; stdout: %q", "listening on", out.String())
	return "", nil
}

func TestWhoami(t *testing.T) {
	url, stop := startWhoami(t, "--header", "X-Tenant")
	const token = "eyJhbGciOiJFUzI1NiJ9.eyJ1c2VybmFtZSI6ImFsaWNlIn0.c2lnbmF0dXJl"
	claims := `{"username":"alice","exp":1900000000}`

	tests := []struct {
		name    string
		method  string
		path    string
		headers [][2]string
		want    whoami.Reply
		claims  string
	}{
		{
			name:   "identity headers as jwtauthz sets them",
			method: http.MethodPost,
			path:   "/orders/42?x=1",
			headers: [][2]string{
				{"Authorization", "Bearer " + token},
				{"X-Auth-User", "alice"},
				{"X-Auth-User-Id", "7"},
				{"X-Auth-Provider", "default"},
				{"X-Auth-Email", "alice@example.com"},
				{"X-Jwt-Payload", base64.RawURLEncoding.EncodeToString([]byte(claims))},
				{"X-Tenant", "acme"},
				{"X-Other", "not echoed"},
			},
			want: whoami.Reply{
				Method: "POST",
				Path:   "/orders/42",
				Headers: map[string]string{
					"x-auth-user":     "alice",
					"x-auth-user-id":  "7",
					"x-auth-provider": "default",
					"x-auth-email":    "alice@example.com",
					"x-jwt-payload":   base64.RawURLEncoding.EncodeToString([]byte(claims)),
					"x-tenant":        "acme",
				},
				Authorization: true,
			},
			claims: claims,
		},
		{
			name:   "nothing: the request did not come through jwtauthz",
			method: http.MethodGet,
			path:   "/",
			want:   whoami.Reply{Method: "GET", Path: "/", Headers: map[string]string{}},
		},
		{
			name:    "a repeated header shows every value",
			method:  http.MethodGet,
			path:    "/a",
			headers: [][2]string{{"X-Auth-User", "alice"}, {"X-Auth-User", "mallory"}},
			want:    whoami.Reply{Method: "GET", Path: "/a", Headers: map[string]string{"x-auth-user": "alice, mallory"}},
		},
		{
			name:    "a payload that is not base64url JSON is echoed, not decoded",
			method:  http.MethodGet,
			path:    "/b",
			headers: [][2]string{{"X-Jwt-Payload", "%%%"}},
			want:    whoami.Reply{Method: "GET", Path: "/b", Headers: map[string]string{"x-jwt-payload": "%%%"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, url+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tt.headers {
				req.Header.Add(h[0], h[1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d, want 200", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("content-type = %q, want application/json", got)
			}
			if strings.Contains(string(body), token) || strings.Contains(string(body), "c2lnbmF0dXJl") {
				t.Fatalf("the body echoes the token:\n%s", body)
			}
			var got whoami.Reply
			dec := json.NewDecoder(strings.NewReader(string(body)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			var gotClaims string
			if got.Claims != nil {
				var c bytes.Buffer
				if err := json.Compact(&c, got.Claims); err != nil {
					t.Fatal(err)
				}
				gotClaims = c.String()
			}
			got.Claims = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if gotClaims != tt.claims {
				t.Errorf("claims = %s, want %s", gotClaims, tt.claims)
			}
		})
	}

	if err := stop(); err != nil {
		t.Errorf("runWhoami after cancel = %v, want nil", err)
	}
	if _, err := http.Get(url); err == nil {
		t.Error("whoami still answers after its context was cancelled")
	}
}

func TestWhoamiErrors(t *testing.T) {
	env := &cliEnv{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	url, stop := startWhoami(t)
	defer stop()
	busy := strings.TrimPrefix(url, "http://")

	tests := []struct {
		name     string
		args     []string
		wantCode int // exitError code; 0: a plain error
		wantErr  string
	}{
		{"address in use", []string{"--listen", busy}, 0, "address already in use"},
		{"bad address", []string{"--listen", "nope"}, 0, "listen nope"},
		{"unexpected argument", []string{"--listen", "127.0.0.1:0", "extra"}, 2, `unexpected argument "extra"`},
		{"unknown flag", []string{"--port", "8000"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runWhoami(context.Background(), env, tt.args)
			if err == nil {
				t.Fatal("runWhoami = nil, want an error")
			}
			var ee *exitError
			if tt.wantCode != 0 && (!errors.As(err, &ee) || ee.code != tt.wantCode) {
				t.Errorf("error = %v, want exit status %d", err, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}
