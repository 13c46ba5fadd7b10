package authz

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/jwtauthz/jwtauthz/authz/token"
)

// TokenSource is one place a token is looked for (token_sources). Exactly
// one of Header, Cookie and Query is set.
type TokenSource struct {
	Header string // a request header, lowercase
	// Prefix is the scheme before the token in Header ("Bearer "),
	// compared case-insensitively; "" takes the whole value. A header
	// whose value does not start with it holds no token.
	Prefix string
	Cookie string // a cookie name (case-sensitive)
	Query  string // a query parameter; removed from the upstream request
}

// DefaultTokenSources are the sources when none is configured: the
// authorization header's Bearer credential.
var DefaultTokenSources = []TokenSource{{Header: "authorization", Prefix: "Bearer "}}

// String names the source for error messages.
func (s TokenSource) String() string {
	switch {
	case s.Cookie != "":
		return fmt.Sprintf("cookie %q", s.Cookie)
	case s.Query != "":
		return fmt.Sprintf("query parameter %q", s.Query)
	case s.Prefix != "":
		return fmt.Sprintf("header %q (%q scheme)", s.Header, strings.TrimSpace(s.Prefix))
	}
	return fmt.Sprintf("header %q", s.Header)
}

// credential is a token as found in a request.
type credential struct {
	raw string
}

// extractToken returns the token of the first source present in the
// request. None present is an error wrapping ErrMissingToken; a source that
// is present but does not hold exactly one well-formed token is the failure
// of a request that carried a credential (malformed): a later source is
// never used in its place.
func extractToken(sources []TokenSource, h requestHeaders, path string) (credential, error) {
	for _, src := range sources {
		var tok string
		var present bool
		var err error
		switch {
		case src.Cookie != "":
			tok, present, err = cookieValue(h, src.Cookie)
		case src.Query != "":
			tok, present, err = queryValue(path, src.Query)
		default:
			tok, present, err = headerToken(h, src.Header, src.Prefix)
		}
		if !present {
			continue
		}
		if err == nil {
			err = checkToken(tok)
		}
		if err != nil {
			return credential{}, withToken(fmt.Errorf("%s: %w", src, err), "")
		}
		return credential{raw: tok}, nil
	}
	if len(sources) == 1 {
		return credential{}, fmt.Errorf("%w: no %s", ErrMissingToken, sources[0])
	}
	return credential{}, fmt.Errorf("%w: none of the %d token sources is in the request", ErrMissingToken, len(sources))
}

// headerToken reads the token of header name. A value without the prefix
// is not a token of this source.
func headerToken(h requestHeaders, name, prefix string) (tok string, present bool, err error) {
	vals := h.values(name)
	if len(vals) == 0 {
		return "", false, nil
	}
	if len(vals) > 1 {
		return "", true, fmt.Errorf("sent %d times: send exactly one", len(vals))
	}
	v := vals[0]
	if len(v) > maxAuthorization {
		return "", true, fmt.Errorf("%d bytes, over the limit of %d", len(v), maxAuthorization)
	}
	tok, ok := cutPrefix(strings.TrimSpace(v), prefix)
	if !ok {
		return "", false, nil
	}
	if tok == "" {
		return "", true, errors.New("the scheme but no token")
	}
	return tok, true, nil
}

// cutPrefix removes the scheme prefix from v, in any case; a prefix that
// ends with a space wants white space after the scheme.
func cutPrefix(v, prefix string) (string, bool) {
	if prefix == "" {
		return v, true
	}
	scheme := strings.TrimRight(prefix, " ")
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	rest := v[len(scheme):]
	if len(scheme) < len(prefix) { // a space must follow the scheme
		if rest != "" && rest[0] != ' ' {
			return "", false // another scheme that starts alike ("Bearerx")
		}
		rest = strings.TrimLeft(rest, " ")
	}
	return rest, true
}

// cookieValue reads cookie name from the cookie headers (RFC 6265 §5.4:
// "name=value" pairs separated by ";"). The same name twice with different
// values is refused: a verifier must not choose between two tokens.
func cookieValue(h requestHeaders, name string) (val string, present bool, err error) {
	for _, header := range h.values("cookie") {
		for pair := range strings.SplitSeq(header, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if present && v != val {
				return "", true, errors.New("sent twice with different values")
			}
			val, present = v, true
		}
	}
	return val, present, nil
}

// queryValue reads parameter name from the query of path, percent-decoded.
// A parameter given twice is refused, as is one that does not decode.
func queryValue(path, name string) (val string, present bool, err error) {
	_, query, ok := strings.Cut(path, "?") // all of it: Go's net/url reads on past a "#"
	if !ok {
		return "", false, nil
	}
	for pair := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if !isQueryName(k, name) {
			continue
		}
		if present {
			return "", true, errors.New("sent twice")
		}
		present = true
		if val, err = url.QueryUnescape(v); err != nil {
			return "", true, errors.New("not percent-encoded correctly")
		}
	}
	return val, present, nil
}

// queryParamsToRemove lists the parameters of path's query that a query
// source reads — names, and each spelling of them the request uses
// ("access%5Ftoken") — so that no token in a query reaches the upstream,
// whether or not it was read: on a route with auth none, or in a dry run
// whose token could not be used. Envoy removes a parameter by its name as
// it appears in the query; listing both spellings holds however it
// compares them.
func queryParamsToRemove(names []string, path string) []string {
	_, query, ok := strings.Cut(path, "?") // as queryValue reads it
	if !ok {
		return nil
	}
	var out []string
	for _, name := range names {
		found := false
		var spellings []string
		for pair := range strings.SplitSeq(query, "&") {
			k, _, _ := strings.Cut(pair, "=")
			if !isQueryName(k, name) {
				continue
			}
			found = true
			if k != name && !slices.Contains(spellings, k) {
				spellings = append(spellings, k)
			}
		}
		if found {
			out = append(out, name)
			out = append(out, spellings...)
		}
	}
	return out
}

// isQueryName reports whether the query key k, as sent, names parameter
// name: verbatim or once percent-decoded ("access%5Ftoken").
func isQueryName(k, name string) bool {
	if k == name {
		return true
	}
	dk, err := url.QueryUnescape(k)
	return err == nil && dk == name
}

// checkToken refuses what cannot be one compact JWS before any parsing:
// more than token.MaxSize bytes, or a byte outside RFC 6750's b64token.
func checkToken(tok string) error {
	if len(tok) > token.MaxSize {
		return fmt.Errorf("token is %d bytes, over the limit of %d", len(tok), token.MaxSize)
	}
	for i := 0; i < len(tok); i++ {
		if !token68[tok[i]] {
			return fmt.Errorf("must hold exactly one token; byte %d is not allowed in a token", i)
		}
	}
	return nil
}
