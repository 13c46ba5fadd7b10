package etcd

import (
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

// errorf wraps err with the operation and the user it was about.
func errorf(op, provider, username string, err error) error {
	return fmt.Errorf("%s user %q of provider %q: %w", op, username, provider, err)
}
