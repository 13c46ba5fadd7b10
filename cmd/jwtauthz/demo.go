package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jwtauthz/jwtauthz/config"
	"github.com/jwtauthz/jwtauthz/internal/extauthz"
	"github.com/jwtauthz/jwtauthz/internal/signing"
)

// runDemo walks a newcomer through the service: a fresh RS512 key, a real
// server on free loopback ports with a real bbolt store, allowed and denied
// checks, and the users it created. Everything lives in a temporary
// directory that is removed at the end.
func runDemo(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "demo", "[--keep]")
	keep := fs.Bool("keep", false, "keep the temporary directory (key, config, database) and print its path")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "jwtauthz-demo-")
	if err != nil {
		return err
	}
	if *keep {
		defer fmt.Fprintf(env.stdout, "\nKept %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	d := &demo{w: env.stdout, dir: dir}
	return d.run(ctx)
}

type demo struct {
	w   io.Writer
	dir string
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.w, "\n== "+format+"\n", args...)
}

func (d *demo) run(ctx context.Context) error {
	d.step("1. An identity provider's key pair (RS512, 4096-bit, as in the original Django setup)")
	key, err := signing.Generate("RS512", 0)
	if err != nil {
		return err
	}
	keyDir := filepath.Join(d.dir, "keys")
	kid, err := signing.WriteKeyFiles(keyDir, "RS512", key)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.w, "$ jwtauthz keygen --alg RS512 --out %s\n   kid %s; the service gets only public.pem\n", keyDir, kid)

	d.step("2. A config file, and the server on free loopback ports")
	cfgPath := filepath.Join(d.dir, "jwtauthz.yaml")
	cfgText := fmt.Sprintf(`listen: 127.0.0.1:0
http_listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  require_claims: {roles: jwtauthz-admin}
store:
  path: %s
providers:
  - name: default
    issuer: https://idp.example.com
    algorithms: [RS512]
    pem_files: [%s]
    claim_headers:
      x-auth-email: email
`, filepath.Join(d.dir, "users.db"), filepath.Join(keyDir, "public.pem"))
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		return err
	}
	fmt.Fprint(d.w, indent(cfgText))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	svc, err := startService(ctx, cfg, serviceOptions{})
	if err != nil {
		return err
	}
	defer svc.shutdown(0)
	if err := d.waitServing(svc); err != nil {
		return err
	}
	addr := svc.grpcAddr.String()
	fmt.Fprintf(d.w, "$ jwtauthz serve --config %s\n   gRPC (ext_authz Check, health) on %s, HTTP (/metrics /healthz /readyz) on %s, admin API on %s\n", cfgPath, addr, svc.httpAddr, svc.adminAddr)

	now := time.Now()
	mintFor := func(user string, ttl time.Duration, extra map[string]any) (string, error) {
		return signing.Mint(key, user, signing.Options{Alg: "RS512", Issuer: "https://idp.example.com", TTL: ttl, Claims: extra, Now: now})
	}
	alice, err := mintFor("alice", time.Hour, map[string]any{"email": "alice@example.com"})
	if err != nil {
		return err
	}

	d.step("3. Alice's first request: allowed, created on the fly; her spoofed x-auth-user is overwritten")
	if err := d.check(ctx, addr, alice, "x-auth-user: admin", "x-auth-role: superuser"); err != nil {
		return err
	}
	d.step("4. Alice again: the same user, no longer new (last_login is written behind)")
	if err := d.check(ctx, addr, alice); err != nil {
		return err
	}

	bob, err := mintFor("bob", time.Hour, nil)
	if err != nil {
		return err
	}
	d.step("5. Bob, whose token has no email: allowed, and a client-sent x-auth-email is removed")
	if err := d.check(ctx, addr, bob, "x-auth-email: ceo@example.com"); err != nil {
		return err
	}

	expired, err := mintFor("carol", -time.Hour, nil)
	if err != nil {
		return err
	}
	d.step("6. An expired token: denied")
	if err := d.check(ctx, addr, expired); err != nil {
		return err
	}

	d.step("7. A tampered token (payload changed to user \"root\", signature kept): denied")
	if err := d.check(ctx, addr, tamper(alice, "root")); err != nil {
		return err
	}

	badSchema, err := mintFor("dave", time.Hour, map[string]any{"username": 42})
	if err != nil {
		return err
	}
	d.step("8. A token whose claims fail the schema (username is a number): denied")
	if err := d.check(ctx, addr, badSchema); err != nil {
		return err
	}

	d.step("9. No token at all: denied")
	if err := d.check(ctx, addr, ""); err != nil {
		return err
	}

	operator, err := mintFor("ops", time.Hour, map[string]any{"roles": []string{"jwtauthz-admin"}})
	if err != nil {
		return err
	}
	admin := svc.adminAddr.String()
	d.step("10. The users jwtauthz created, without any sign-up (an operator's token holds roles: jwtauthz-admin)")
	if err := d.users(ctx, "list", "--addr", admin, "--token", operator); err != nil {
		return err
	}
	d.step("11. Bob is locked out at once, although his token is valid and cached")
	if err := d.users(ctx, "deactivate", "bob", "--addr", admin, "--token", operator); err != nil {
		return err
	}
	if err := d.check(ctx, addr, bob); err != nil {
		return err
	}
	d.step("12. Bob is let back in")
	if err := d.users(ctx, "activate", "bob", "--addr", admin, "--token", operator); err != nil {
		return err
	}
	if err := d.check(ctx, addr, bob); err != nil {
		return err
	}

	d.step("13. What /metrics counted")
	if err := d.metrics(ctx, svc.httpAddr.String()); err != nil {
		return err
	}
	fmt.Fprintln(d.w, "\nDone: the server drained, flushed its store and stopped; the temporary directory is removed.")
	return nil
}

func (d *demo) waitServing(svc *service) error {
	deadline := time.Now().Add(10 * time.Second)
	for !svc.serving() {
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: server not SERVING after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// users runs "jwtauthz users ARGS" against the admin API and prints its output.
func (d *demo) users(ctx context.Context, args ...string) error {
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if i > 0 && args[i-1] == "--token" {
			shown[i] = abbreviate(a)
		}
	}
	fmt.Fprintf(d.w, "$ jwtauthz users %s\n", strings.Join(shown, " "))
	var out strings.Builder
	env := &cliEnv{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &out, stderr: &out}
	err := runUsers(ctx, env, args)
	fmt.Fprint(d.w, indent(out.String()))
	return err
}

// check sends one Envoy-shaped CheckRequest and prints what came back.
func (d *demo) check(ctx context.Context, addr, tok string, headers ...string) error {
	cmd := "$ jwtauthz check --addr " + addr
	if tok != "" {
		cmd += " --token " + abbreviate(tok)
	}
	for _, h := range headers {
		cmd += fmt.Sprintf(" --header '%s'", h)
	}
	fmt.Fprintln(d.w, cmd)
	req, err := extauthz.New(extauthz.Request{Addr: addr, Token: tok, Headers: headers, Path: "/api/orders"})
	if err != nil {
		return err
	}
	resp, err := sendCheck(ctx, addr, req, 5*time.Second)
	if err != nil {
		return err
	}
	var b strings.Builder
	extauthz.Print(&b, resp)
	fmt.Fprint(d.w, indent(b.String()))
	return nil
}

func (d *demo) metrics(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fmt.Fprintf(d.w, "$ curl http://%s/metrics | grep -E 'jwtauthz_(checks|users_created)_total'\n", addr)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "jwtauthz_checks_total{") || strings.HasPrefix(line, "jwtauthz_users_created_total ") {
			fmt.Fprintln(d.w, "   "+line)
		}
	}
	return sc.Err()
}

// tamper replaces the payload's username, keeping header and signature.
func tamper(tok, username string) string {
	parts := strings.Split(tok, ".")
	payload := fmt.Sprintf(`{"username":%q,"sub":%q,"iss":"https://idp.example.com","exp":%d}`, username, username, time.Now().Add(time.Hour).Unix())
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + parts[2]
}

// abbreviate shows a token's start and end only, as a log would not show it at all.
func abbreviate(tok string) string {
	if len(tok) <= 24 {
		return tok
	}
	return tok[:12] + "…" + tok[len(tok)-8:]
}

func indent(s string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString("   " + l)
		}
	}
	return b.String()
}
