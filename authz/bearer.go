package authz

import (
	"errors"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// MaxHeaders bounds the request headers a Check looks at. Envoy sends at most
// 100 by default; a request with more is refused unread.
const MaxHeaders = 1024

// maxAuthorization bounds the authorization header: the token limit plus
// the scheme and some whitespace.
const maxAuthorization = 8<<10 + 64

// requestHeaders is a view of the request's headers in either of Envoy's
// forms: the headers map, or header_map (when encode_raw_headers is on).
type requestHeaders struct {
	m  map[string]string
	hm []*corev3.HeaderValue
}

// headerMapValue is a header_map entry's value: raw_value when set (Envoy's
// encode_raw_headers), else value.
func headerMapValue(kv *corev3.HeaderValue) string {
	if raw := kv.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return kv.GetValue()
}

func headersOf(req *authv3.CheckRequest) (requestHeaders, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	h := requestHeaders{m: httpReq.GetHeaders()}
	if hs := httpReq.GetHeaderMap().GetHeaders(); len(hs) > 0 {
		if len(hs) > MaxHeaders {
			return h, fmt.Errorf("request has %d headers, over the limit of %d", len(hs), MaxHeaders)
		}
		h.hm = hs
	}
	if len(h.m) > MaxHeaders {
		return h, fmt.Errorf("request has %d headers, over the limit of %d", len(h.m), MaxHeaders)
	}
	return h, nil
}

// each calls f for every header name (lowercased) in both forms.
func (h requestHeaders) each(f func(name string)) {
	for k := range h.m {
		f(lower(k))
	}
	for _, kv := range h.hm {
		f(lower(kv.GetKey()))
	}
}

// values returns the values of the header name (lowercase), compared in
// any case: those of the headers map when it has any, else header_map's.
func (h requestHeaders) values(name string) []string {
	var vals []string
	for k, v := range h.m {
		if strings.EqualFold(k, name) {
			vals = append(vals, v)
		}
	}
	if len(vals) > 0 {
		return vals
	}
	for _, kv := range h.hm {
		if strings.EqualFold(kv.GetKey(), name) {
			vals = append(vals, headerMapValue(kv))
		}
	}
	return vals
}

// ParseBearer returns the one token of an authorization value (RFC 6750
// §2.1): the Bearer scheme in any case, then exactly one b64token of at
// most token.MaxSize bytes. Check reads the default token source this way,
// and so do the admin API and verify. A value of another scheme wraps
// ErrMissingToken; a Bearer value that is not one token is malformed.
// Errors never quote the value.
func ParseBearer(v string) (string, error) {
	if len(v) > maxAuthorization {
		return "", fmt.Errorf("authorization header is %d bytes, over the limit of %d", len(v), maxAuthorization)
	}
	tok, ok := cutPrefix(strings.TrimSpace(v), "Bearer ")
	switch {
	case !ok:
		return "", fmt.Errorf("%w: authorization header does not use the Bearer scheme", ErrMissingToken)
	case tok == "":
		return "", errors.New("authorization header has the Bearer scheme but no token")
	}
	if err := checkToken(tok); err != nil {
		return "", fmt.Errorf("authorization header %w", err)
	}
	return tok, nil
}

// token68 marks the bytes a b64token may hold (RFC 6750 §2.1). A table,
// because this runs on every byte of every token, cached or not.
var token68 = func() (t [256]bool) {
	for c := range 256 {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '='
	}
	return t
}()

// lower lowercases ASCII without allocating when s is already lowercase,
// as Envoy sends it.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
