package keys_test

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/internal/testlog"
)

func TestRedactURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://idp.example/jwks":                           "https://idp.example/jwks",
		"https://user:s3cret@idp.example/jwks":               "https://REDACTED@idp.example/jwks",
		"https://t0ken@idp.example/jwks":                     "https://REDACTED@idp.example/jwks",
		"https://idp.example/jwks?api_key=s3cret&x=1":        "https://idp.example/jwks?REDACTED",
		"https://u:p@idp.example:8443/a/b?sig=s3cret#frag":   "https://REDACTED@idp.example:8443/a/b?REDACTED",
		"https://idp.example/jwks?":                          "https://idp.example/jwks?REDACTED",
		"http://[::1]:80/x?k=v":                              "http://[::1]:80/x?REDACTED",
		"ftp://x":                                            "ftp://x",
		"https://idp.example/\x7f?key=s3cret":                "(unparsable URL)",
		"https://user:s3cret@idp.example/%zz?api_key=s3cret": "(unparsable URL)",
	} {
		if got := keys.RedactURL(raw); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestRemoteNeverShowsURLSecrets: the user-info and query of a jwks_url,
// and of a discovered jwks_uri, appear in no error and no log line,
// whatever the failure.
func TestRemoteNeverShowsURLSecrets(t *testing.T) {
	const secret = "s3cret-password"
	const query = "api_key=t0psecret"
	p, slow := newIDP(t), newIDP(t)
	closed := newIDP(t)
	closedURL := closed.URL
	closed.Close()
	k1 := generate(t, "ES256")
	withSecrets := func(base, path string) string {
		u, _ := url.Parse(base + path + "?" + query)
		u.User = url.UserPassword("client", secret)
		return u.String()
	}
	for _, tc := range []struct {
		name  string
		opts  keys.RemoteOptions
		setup func()
	}{
		{"HTTP 500", keys.RemoteOptions{URL: withSecrets(p.URL, "/jwks-500")}, func() { p.set("/jwks-500", page{status: 500}) }},
		{"not JSON", keys.RemoteOptions{URL: withSecrets(p.URL, "/jwks-html")}, func() { p.set("/jwks-html", page{body: []byte("<html>" + query)}) }},
		{"a malformed key beside a good one", keys.RemoteOptions{URL: withSecrets(p.URL, "/jwks-bad-key")}, func() {
			p.set("/jwks-bad-key", page{body: jwks(t, jwk(t, k1, nil), map[string]any{"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"})})
		}},
		{"connection refused", keys.RemoteOptions{URL: withSecrets(closedURL, "/jwks")}, func() {}},
		{"timeout", keys.RemoteOptions{URL: withSecrets(slow.URL, "/jwks"), HTTPTimeout: 100 * time.Millisecond}, func() {
			slow.set("/jwks", page{body: jwks(t, jwk(t, k1, nil))})
			t.Cleanup(slow.holdRequests())
		}},
		{"an unparsable URL", keys.RemoteOptions{URL: "https://client:" + secret + "@idp.example/%zz?" + query}, func() {}},
		{"discovered jwks_uri failing", keys.RemoteOptions{DiscoveryIssuer: p.URL + "/tenant"}, func() {
			p.set("/tenant/.well-known/openid-configuration", page{body: discoveryDoc(t, p.URL+"/tenant", withSecrets(p.URL, "/keys-500"))})
			p.set("/keys-500", page{status: 503})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.setup()
			var buf testlog.Buffer
			opts := tc.opts
			opts.Logger = slog.New(slog.NewJSONHandler(&buf, nil))
			r := keys.NewRemote(opts)
			err := r.Refresh(context.Background())
			shown := buf.String()
			if err != nil {
				shown += "\n" + err.Error()
			}
			if shown == "" {
				t.Fatal("nothing was logged or returned: the case tests nothing")
			}
			for _, s := range []string{secret, query, "t0psecret", "client:"} {
				if strings.Contains(shown, s) {
					t.Errorf("%q shown:\n%s", s, shown)
				}
			}
			if !strings.Contains(shown, "REDACTED") && !strings.Contains(shown, "unparsable URL") {
				t.Errorf("no redacted URL in:\n%s", shown)
			}
			t.Logf("shown: %s", shown)
		})
	}
	// The server did get the credentials: redaction is for logs only.
	if h := p.lastHeaders("/jwks-500"); !strings.HasPrefix(h.Get("Authorization"), "Basic ") {
		t.Errorf("user-info not sent as Basic auth: %v", h)
	}
}
