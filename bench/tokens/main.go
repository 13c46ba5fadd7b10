// Command tokens makes the load run's inputs: it mints JWTs in-process
// (minting thousands of RS512-4096 tokens one `jwtauthz mint` process each
// would take minutes) and turns token files into ghz data files of
// Envoy-shaped CheckRequests.
//
//	tokens mint --key private.pem --alg RS512 --iss https://a.example --n 5000 --prefix rs > rs.txt
//	tokens requests rs.txt es.txt > checks.json
//
// mint prints one token per line, for users PREFIX-START ... PREFIX-(START+N-1).
// requests reads token files (one token a line), takes one token from each
// file in turn, and prints a JSON array of CheckRequests (protojson), which
// ghz --data-file sends round-robin: request i is element i mod len.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/jwtauthz/jwtauthz/internal/extauthz"
	"github.com/jwtauthz/jwtauthz/internal/signing"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tokens:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: tokens mint|requests [flags]")
	}
	w := bufio.NewWriterSize(stdout, 1<<20)
	var err error
	switch args[0] {
	case "mint":
		err = runMint(args[1:], w)
	case "requests":
		err = runRequests(args[1:], w)
	default:
		return fmt.Errorf("unknown command %q: want mint or requests", args[0])
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

func runMint(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("mint", flag.ContinueOnError)
	keyFile := fs.String("key", "", "PKCS#8 PEM private key (as jwtauthz keygen writes)")
	alg := fs.String("alg", "", "signing algorithm: RS512, ES256, ...")
	kid := fs.String("kid", "", `kid header; "" omits it`)
	iss := fs.String("iss", "", "iss claim")
	ttl := fs.Duration("ttl", 6*time.Hour, "lifetime: exp = now + ttl")
	n := fs.Int("n", 1000, "number of tokens, one user each")
	prefix := fs.String("prefix", "user", "username prefix: PREFIX-i")
	start := fs.Int("start", 0, "first i")
	if err := fs.Parse(args); err != nil {
		return err
	}
	method := jwt.GetSigningMethod(*alg)
	if method == nil {
		return fmt.Errorf("--alg %q: unknown algorithm", *alg)
	}
	key, err := signing.LoadPrivateKey(*keyFile)
	if err != nil {
		return err
	}

	now := time.Now()
	toks := make([]string, *n)
	errs := make([]error, *n)
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for g := range workers {
		wg.Go(func() {
			for i := g; i < *n; i += workers {
				user := fmt.Sprintf("%s-%d", *prefix, *start+i)
				claims := jwt.MapClaims{
					"username": user,
					"sub":      "sub-" + user,
					"email":    user + "@example.com",
					"iat":      now.Unix(),
					"exp":      now.Add(*ttl).Unix(),
				}
				if *iss != "" {
					claims["iss"] = *iss
				}
				t := jwt.NewWithClaims(method, claims)
				if *kid != "" {
					t.Header["kid"] = *kid
				}
				toks[i], errs[i] = t.SignedString(key)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	for _, t := range toks {
		if _, err := io.WriteString(w, t+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// Request shapes, picked by index so a pool mixes them the same way every run.
var (
	methods = []string{"GET", "GET", "GET", "POST", "GET", "PUT", "GET", "DELETE"}
	paths   = []string{"/api/v1/items", "/api/v1/items/%d", "/api/v1/users/me", "/api/v1/orders/%d/lines", "/healthz/deep"}
	agents  = []string{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36", "okhttp/4.12.0", "python-requests/2.32.3", "curl/8.9.1"}
)

func runRequests(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("requests", flag.ContinueOnError)
	host := fs.String("host", "api.example.com", ":authority of the requests")
	format := fs.String("format", "json", "json: a JSON array (ghz --data-file); binary: length-delimited protobuf messages (ghz --binary-file)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "json" && *format != "binary" {
		return fmt.Errorf("--format %q: want json or binary", *format)
	}
	var pools [][]string
	for _, name := range fs.Args() {
		toks, err := readLines(name)
		if err != nil {
			return err
		}
		if len(toks) > 0 {
			pools = append(pools, toks)
		}
	}
	if len(pools) == 0 {
		return errors.New("requests: no tokens (give one or more token files)")
	}

	now := timestamppb.Now()
	opts := protojson.MarshalOptions{} // lowerCamelCase names, as ghz's dynamic messages read them
	if *format == "json" {
		io.WriteString(w, "[\n")
	}
	n := 0
	for round := 0; ; round++ {
		done := true
		for _, p := range pools {
			if round >= len(p) {
				continue
			}
			done = false
			req := checkRequest(n, p[round], *host, now)
			if *format == "binary" {
				if _, err := protodelim.MarshalTo(w, req); err != nil {
					return err
				}
				n++
				continue
			}
			b, err := opts.Marshal(req)
			if err != nil {
				return err
			}
			if n > 0 {
				io.WriteString(w, ",\n")
			}
			w.Write(b)
			n++
		}
		if done {
			break
		}
	}
	if *format == "json" {
		_, err := io.WriteString(w, "\n]\n")
		return err
	}
	return nil
}

// checkRequest is request i as Envoy's ext_authz filter sends it: peers,
// time, and the HTTP request with lowercased headers and pseudo-headers.
func checkRequest(i int, token, host string, now *timestamppb.Timestamp) *authv3.CheckRequest {
	method := methods[i%len(methods)]
	path := paths[i%len(paths)]
	if strings.Contains(path, "%d") {
		path = fmt.Sprintf(path, i%997)
	}
	id := extauthz.RequestID()
	return &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{
			Source:      extauthz.Peer(fmt.Sprintf("10.1.%d.%d", i/250%250, i%250+1), uint32(32768+i%28000)),
			Destination: extauthz.Peer("10.0.0.10", 8080),
			Request: &authv3.AttributeContext_Request{
				Time: now,
				Http: &authv3.AttributeContext_HttpRequest{
					Id:     id,
					Method: method,
					Headers: map[string]string{
						":authority":        host,
						":method":           method,
						":path":             path,
						":scheme":           "https",
						"accept":            "application/json",
						"authorization":     "Bearer " + token,
						"user-agent":        agents[i%len(agents)],
						"x-forwarded-for":   fmt.Sprintf("203.0.113.%d", i%250+1),
						"x-forwarded-proto": "https",
						"x-request-id":      id,
					},
					Path:     path,
					Host:     host,
					Scheme:   "https",
					Protocol: "HTTP/2",
				},
			},
		},
	}
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		if l := sc.Text(); l != "" {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}
