package authz

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/jwtauthz/jwtauthz/authz/token"
)

// FuzzBearerToken feeds arbitrary authorization headers, in either of
// Envoy's header forms and next to a second header that may also be an
// authorization header, through headersOf and extractToken with the
// default token source. The extracted
// token must be exactly what an independent reading of RFC 6750 §2.1 finds:
// nothing is accepted that is not one well-formed Bearer credential, and
// nothing well-formed is refused.
func FuzzBearerToken(f *testing.F) {
	for _, seed := range []struct {
		value, otherName, otherValue string
		headerMap                    bool
	}{
		{"Bearer eyJhbGciOiJSUzI1NiJ9.eyJ1c2VybmFtZSI6ImEifQ.c2ln", "x-request-id", "1", false},
		{"bearer   abc.def.ghi", "", "", true},
		{"BEARER abc~+/=", "Authorization", "Bearer other", false},
		{"Basic dXNlcjpwYXNz", "x-auth-user", "root", false},
		{"Bearer a b", "authorization", "Bearer a", true},
		{"Bearer", "", "", false},
		{"  Bearer\ttok", "", "", true},
		{"Bearer tok\x00", "AUTHORIZATION", "", true},
		{"Bearer " + strings.Repeat("a", 64) + "." + strings.Repeat("b", 64) + ".c", "", "", false},
	} {
		f.Add(seed.value, seed.otherName, seed.otherValue, seed.headerMap)
	}
	f.Fuzz(func(t *testing.T, value, otherName, otherValue string, headerMap bool) {
		req := fuzzRequest(value, otherName, otherValue, headerMap)
		h, err := headersOf(req)
		if err != nil {
			t.Fatalf("headersOf refused a request with at most 2 headers: %v", err)
		}
		c, err := extractToken(DefaultTokenSources, h, "")
		tok := c.raw

		twoAuth := strings.EqualFold(otherName, "authorization") && !(otherName == "authorization" && !headerMap)
		wantTok, wantOK, wantMissing := parseBearer(value)
		switch {
		case twoAuth:
			if err == nil {
				t.Fatalf("two authorization headers (%q, %q): accepted token %q", value, otherValue, tok)
			}
			if errors.Is(err, ErrMissingToken) {
				t.Fatalf("two authorization headers: error %v, want a malformed-request error", err)
			}
		case err == nil:
			if !wantOK {
				t.Fatalf("authorization %q: accepted token %q, which is not one Bearer token", value, tok)
			}
			if tok != wantTok {
				t.Fatalf("authorization %q: token %q, want %q", value, tok, wantTok)
			}
		default:
			if wantOK {
				t.Fatalf("authorization %q: refused (%v), want token %q", value, err, wantTok)
			}
			if got := errors.Is(err, ErrMissingToken); got != wantMissing {
				t.Fatalf("authorization %q: missing-token = %v (%v), want %v", value, got, err, wantMissing)
			}
			if tok != "" {
				t.Fatalf("authorization %q: error %v but token %q", value, err, tok)
			}
		}
	})
}

// fuzzRequest builds a CheckRequest holding an authorization header and one
// other header, in the headers map or in header_map. In the map, a second
// key "authorization" would overwrite the first, as Envoy never sends it.
func fuzzRequest(value, otherName, otherValue string, headerMap bool) *authv3.CheckRequest {
	httpReq := &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}
	if headerMap {
		hm := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "authorization", RawValue: []byte(value)}}}
		if otherName != "" {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: otherName, Value: otherValue})
		}
		httpReq.HeaderMap = hm
	} else {
		m := map[string]string{"authorization": value}
		if otherName != "" && otherName != "authorization" {
			m[otherName] = otherValue
		}
		httpReq.Headers = m
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: httpReq},
	}}
}

// parseBearer is the test's own reading of an authorization value: optional
// surrounding whitespace, the scheme "Bearer" in any case, one or more
// spaces, then one token68 (RFC 7235 §2.1) of at most the size limit.
// missing reports that the value does not use the Bearer scheme at all.
func parseBearer(v string) (tok string, ok, missing bool) {
	if len(v) > maxAuthorization {
		return "", false, false
	}
	v = strings.TrimSpace(v)
	const scheme = "bearer"
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false, true
	}
	rest := v[len(scheme):]
	if rest == "" {
		return "", false, false
	}
	if rest[0] != ' ' {
		// "Bearerx ..." or "Bearer\t...": another scheme.
		return "", false, true
	}
	rest = strings.TrimLeft(rest, " ")
	if rest == "" || len(rest) > token.MaxSize {
		return "", false, false
	}
	const token68 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/="
	for i := 0; i < len(rest); i++ {
		if !strings.ContainsRune(token68, rune(rest[i])) {
			return "", false, false
		}
	}
	return rest, true, false
}
