package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jwtauthz/jwtauthz/config"
)

// The peer conformance vectors live beside the checkout, in ../shared/ (read
// only, never copied into the project). CI always has them.
func conformancePath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("JWTAUTHZ_CONFORMANCE"); p != "" {
		return p
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for ; dir != filepath.Dir(dir); dir = filepath.Dir(dir) {
		p := filepath.Join(dir, "shared", "conformance", "peer-vectors.json")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("peer-vectors.json not found beside the checkout (../shared/conformance); CI must judge every case")
	}
	t.Skip("peer-vectors.json not found beside the checkout; set JWTAUTHZ_CONFORMANCE to run the conformance judge")
	return ""
}

type vector struct {
	Name     string         `json:"name"`
	Token    string         `json:"token"`
	Header   any            `json:"header"`
	Payload  any            `json:"payload"`
	Expected string         `json:"expected"`
	Reason   *string        `json:"reason"`
	Key      vectorKey      `json:"key"`
	Config   vectorConfig   `json:"verifier_config"`
	Extra    map[string]any `json:"-"`
}

type vectorKey struct {
	Format         string `json:"format"`
	Text           string `json:"text"`
	TextNormalized string `json:"text_normalized"`
}

type vectorConfig struct {
	ReferenceTime int64    `json:"reference_time"`
	AllowedAlgs   []string `json:"allowed_algs"`
	Issuer        *string  `json:"issuer"`
	Audiences     []string `json:"audiences"`
	ClockSkew     *int64   `json:"clock_skew_s"`
}

// policyVerdict is the case's expected outcome under jwtauthz's documented
// policy, stricter than some sources in the four ways the vectors' README
// lists: exp is required, tokens over 8 KiB are refused, crit is refused,
// base64url padding is refused.
func policyVerdict(v vector) (valid bool, why string) {
	if v.Expected != "valid" {
		return false, "the source expects invalid"
	}
	if p, ok := v.Payload.(map[string]any); !ok || p["exp"] == nil {
		return false, "exp is required"
	}
	if len(v.Token) > 8<<10 {
		return false, "over 8 KiB"
	}
	if h, ok := v.Header.(map[string]any); ok && h["crit"] != nil {
		return false, "crit is refused"
	}
	if strings.Contains(v.Token, "=") {
		return false, "base64url padding is refused"
	}
	return true, ""
}

// documentedDifferences reads the case names listed in docs/reliability.md's
// conformance section: the cases whose outcome differs from policyVerdict,
// each with its explanation.
func documentedDifferences(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "reliability.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([^`]+)` \\|")
	out := map[string]bool{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "<!-- conformance-differences:begin -->"):
			in = true
		case strings.HasPrefix(line, "<!-- conformance-differences:end -->"):
			in = false
		case in:
			if m := row.FindStringSubmatch(line); m != nil {
				out[m[1]] = true
			}
		}
	}
	return out
}

// mustAgree are cases that may never become documented differences: a
// token without a kid before a JWK Set whose keys all carry one is tried
// against every key, as Envoy's jwt_authn does (SPEC.md, "Check
// semantics"), so these verify.
var mustAgree = map[string]bool{
	"jvl/rsa-jwks/no-kid-ok":          true,
	"jvl/rsa-jwks/no-kid-long-exp-ok": true,
	"jvl/rsa-jwks-no-alg/no-kid-ok":   true,
}

// TestConformance judges every peer vector through the same code path as
// "jwtauthz verify --config FILE --at TIME TOKEN".
func TestConformance(t *testing.T) {
	data, err := os.ReadFile(conformancePath(t))
	if err != nil {
		t.Fatal(err)
	}
	var vectors []vector
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatal(err)
	}
	documented := documentedDifferences(t)
	seen := map[string]bool{}
	agree, differ := 0, 0
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			seen[v.Name] = true
			outcome, detail := judge(t, v, "sub")
			want, why := policyVerdict(v)
			if mustAgree[v.Name] && (outcome != "valid" || documented[v.Name]) {
				t.Errorf("jwtauthz says %s (%s), documented as a difference: %v; Envoy's kid rule makes it valid", outcome, detail, documented[v.Name])
			}
			// A configuration jwtauthz refuses at load accepts no token at all.
			matches := (outcome == "valid") == want
			switch {
			case matches && documented[v.Name]:
				t.Errorf("documented as a difference in docs/reliability.md, but jwtauthz now says %s (%s), as the policy expects: remove it from the doc", outcome, detail)
			case matches:
				agree++
			case documented[v.Name]:
				differ++
				if outcome == "valid" {
					t.Errorf("jwtauthz accepts a token the policy refuses (%s): a difference may only be stricter", why)
				}
				if strings.Contains(detail, "(username_claim)") {
					// The token names no user in sub. Show that this is the
					// only difference: with a claim it has, it verifies.
					if again, d := judge(t, v, "iss"); again != "valid" {
						t.Errorf("with username_claim iss: %s (%s), want valid", again, d)
					}
				}
			default:
				t.Errorf("jwtauthz says %s (%s); the policy expects %v (%s). Fix it, or explain the difference in docs/reliability.md", outcome, detail, want, why)
			}
		})
	}
	for name := range mustAgree {
		if !seen[name] {
			t.Errorf("%q must agree, but it is not a case", name)
		}
	}
	for name := range documented {
		if !seen[name] {
			t.Errorf("docs/reliability.md lists %q, which is not a case", name)
		}
	}
	t.Logf("%d cases: %d as the policy expects, %d documented differences", len(vectors), agree, differ)
}

// judge writes a provider config for v and runs verify. It returns "valid",
// "invalid", or "refused" when verify could not judge the token (exit 2: the
// configuration is refused at load, or there is no token), and the reason.
func judge(t *testing.T, v vector, usernameClaim string) (outcome, detail string) {
	dir := t.TempDir()
	p := map[string]any{"name": "peer", "username_claim": usernameClaim, "leeway": "0s"}
	schema := filepath.Join(dir, "schema.json")
	os.WriteFile(schema, []byte(`{}`), 0o600) // permissive: the vectors test verification, not claims
	p["claims_schema"] = schema
	if s := v.Config.ClockSkew; s != nil {
		p["leeway"] = fmt.Sprintf("%ds", *s)
	}
	if v.Config.Issuer != nil && *v.Config.Issuer != "" {
		p["issuer"] = *v.Config.Issuer
	}
	if len(v.Config.Audiences) > 0 {
		p["audiences"] = v.Config.Audiences
	}

	hasPublic, hasSecret := writeVectorKeys(t, dir, v, p)
	algs := v.Config.AllowedAlgs
	if len(algs) == 0 {
		if h, ok := v.Header.(map[string]any); ok {
			if a, ok := h["alg"].(string); ok && slices.Contains(config.Algorithms, a) {
				algs = []string{a}
			}
		}
	}
	var allowed []string
	for _, a := range algs {
		if strings.HasPrefix(a, "HS") && hasSecret || !strings.HasPrefix(a, "HS") && hasPublic {
			allowed = append(allowed, a)
		}
	}
	if len(allowed) == 0 {
		// No algorithm both allowed and backed by a key: pick one the keys
		// fit, so the provider loads and the token's own alg is judged.
		if hasPublic {
			allowed = []string{"RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"}
		} else {
			allowed = []string{"HS256"}
		}
	}
	p["algorithms"] = allowed

	cfg := map[string]any{"listen": "127.0.0.1:0", "store": map[string]any{"path": filepath.Join(dir, "unused.db")}, "providers": []any{p}}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "peer.yaml")
	os.WriteFile(cfgPath, b, 0o600)

	var out, errOut strings.Builder
	err = run(context.Background(), []string{"verify", "--config", cfgPath, "--at", fmt.Sprint(v.Config.ReferenceTime), v.Token},
		func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
	switch code := exitCode(err, io.Discard); code {
	case 0:
		return "valid", "verified"
	case 1:
		return "invalid", reasonLine(out.String())
	default:
		return "refused", strings.TrimSpace(errOut.String() + " " + fmt.Sprint(err))
	}
}

func reasonLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "reason:") || strings.HasPrefix(l, "detail:") {
			out = strings.TrimSpace(strings.Join(strings.Fields(l), " "))
			if strings.HasPrefix(l, "detail:") {
				return out
			}
		}
	}
	return out
}

// writeVectorKeys turns the vector's key into jwtauthz key files: PEM and
// certificates as pem_files, JWK Sets as a jwks_file, and symmetric JWKs as
// an hmac_secret_file (jwtauthz reads shared secrets only from there; when
// a set holds several, the one the token's kid names is used, or the only
// one).
func writeVectorKeys(t *testing.T, dir string, v vector, p map[string]any) (hasPublic, hasSecret bool) {
	t.Helper()
	text := v.Key.Text
	if v.Key.TextNormalized != "" {
		text = v.Key.TextNormalized
	}
	switch v.Key.Format {
	case "pem":
		path := filepath.Join(dir, "key.pem")
		os.WriteFile(path, []byte(text), 0o600)
		p["pem_files"] = []string{path}
		return true, false
	case "google_x509_kid_map":
		var m map[string]string
		if err := json.Unmarshal([]byte(text), &m); err != nil {
			t.Fatal(err)
		}
		var files []string
		for kid, cert := range m {
			path := filepath.Join(dir, "cert-"+kid+".pem")
			os.WriteFile(path, []byte(cert), 0o600)
			files = append(files, path)
		}
		slices.Sort(files)
		p["pem_files"] = files
		return true, false
	case "jwk":
		text = `{"keys":[` + text + `]}`
	case "jwks":
	default:
		t.Fatalf("unknown key format %q", v.Key.Format)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(text), &set); err != nil {
		t.Fatalf("key JSON: %v", err)
	}
	kid := ""
	if h, ok := v.Header.(map[string]any); ok {
		kid, _ = h["kid"].(string)
	}
	var public, secrets []map[string]any
	for _, k := range set.Keys {
		if k["kty"] == "oct" {
			secrets = append(secrets, k)
		} else {
			public = append(public, k)
		}
	}
	if len(public) > 0 {
		b, _ := json.Marshal(map[string]any{"keys": public})
		path := filepath.Join(dir, "jwks.json")
		os.WriteFile(path, b, 0o600)
		p["jwks_file"] = path
		hasPublic = true
	}
	var secret map[string]any
	for _, k := range secrets {
		if len(secrets) == 1 || k["kid"] == kid {
			secret = k
		}
	}
	if secret != nil {
		raw, err := base64.RawURLEncoding.DecodeString(fmt.Sprint(secret["k"]))
		if err != nil {
			t.Fatalf("oct key: %v", err)
		}
		path := filepath.Join(dir, "secret")
		os.WriteFile(path, raw, 0o600)
		p["hmac_secret_file"] = path
		hasSecret = true
	}
	return hasPublic, hasSecret
}
