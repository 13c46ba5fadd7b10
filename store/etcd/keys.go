package etcd

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// The layout under Options.Prefix:
//
//	users/<provider>/<username>  the adminv1.User, proto-binary-encoded
//	ids/<id as 20 digits>        "users/<provider>/<username>", for paging by id
//	last-id                      the last id handed out, in decimal
//
// Provider and username are escaped (see appendEscaped), so neither holds a
// "/" and the key of any pair of byte strings is unambiguous.
const (
	usersDir  = "users/"
	idsDir    = "ids/"
	lastIDKey = "last-id"
)

const upperHex = "0123456789ABCDEF"

// appendEscaped appends s with every byte outside [A-Za-z0-9-._~@]
// written as %XX, so that the result is printable, never holds a "/", and
// maps back to s one way only.
func appendEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '@' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xF])
	}
	return dst
}

// appendKey appends the key of (provider, username) below users/: the
// escaped provider, "/", the escaped username. It is also the key of the
// user in memory.
func appendKey(dst []byte, provider, username string) []byte {
	dst = appendEscaped(dst, provider)
	dst = append(dst, '/')
	return appendEscaped(dst, username)
}

// providerPrefix is the start of the keys below users/ of one provider.
func providerPrefix(provider string) string {
	return string(appendEscaped(nil, provider)) + "/"
}

// idName is the key of an id below ids/: zero-padded to the 20 digits of
// the largest uint64, so that keys sort by id.
func idName(id uint64) string {
	return fmt.Sprintf("%020d", id)
}

// parseLastID reads the value of the last-id key.
func parseLastID(v []byte) (uint64, error) {
	id, err := strconv.ParseUint(strings.TrimSpace(string(v)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s holds %q, not an id: %w", lastIDKey, v, err)
	}
	return id, nil
}

// parseUserKey is the inverse of appendKey.
func parseUserKey(key []byte) (provider, username string, err error) {
	p, u, ok := bytes.Cut(key, []byte("/"))
	if !ok {
		return "", "", fmt.Errorf("%q has no \"/\" between provider and username", key)
	}
	if provider, err = unescape(p); err != nil {
		return "", "", err
	}
	if username, err = unescape(u); err != nil {
		return "", "", err
	}
	return provider, username, nil
}

// unescape is the inverse of appendEscaped.
func unescape(b []byte) (string, error) {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '%' {
			out = append(out, b[i])
			continue
		}
		if i+2 >= len(b) {
			return "", fmt.Errorf("%q ends within an escape", b)
		}
		v, err := strconv.ParseUint(string(b[i+1:i+3]), 16, 8)
		if err != nil {
			return "", fmt.Errorf("%q: bad escape %q", b, b[i:i+3])
		}
		out = append(out, byte(v))
		i += 2
	}
	return string(out), nil
}
