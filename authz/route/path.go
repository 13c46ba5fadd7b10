package route

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadPath is wrapped by the errors of CheckPath.
var ErrBadPath = errors.New("path not in normal form")

// CheckPath reports whether path (without its query) is in normal form,
// so that the path a rule sees is the path the upstream resolves: it
// starts with "/", and has no "." or ".." segment, no empty segment ("//";
// a trailing "/" is fine), no backslash, and no percent-encoded "/", "\"
// or unreserved character (RFC 3986 §2.3: ALPHA, DIGIT, "-", ".", "_",
// "~"), which a server decodes before it resolves the path. An empty path
// is "/". Errors never quote more than the offending segment.
func CheckPath(path string) error {
	if path == "" {
		return nil
	}
	if path[0] != '/' {
		return fmt.Errorf("%w: it does not start with \"/\"", ErrBadPath)
	}
	start := 1
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			switch c := path[i]; c {
			case '\\':
				return fmt.Errorf("%w: a backslash, which some servers read as \"/\"", ErrBadPath)
			case '%':
				if i+2 >= len(path) || unhex(path[i+1]) < 0 || unhex(path[i+2]) < 0 {
					return fmt.Errorf("%w: a %% not followed by two hex digits", ErrBadPath)
				}
				if d := byte(unhex(path[i+1])<<4 | unhex(path[i+2])); d == '/' || d == '\\' || unreserved(d) {
					return fmt.Errorf("%w: %q is an encoded %q", ErrBadPath, path[i:i+3], d)
				}
			}
			continue
		}
		switch seg := path[start:i]; {
		case seg == "" && i < len(path):
			return fmt.Errorf("%w: an empty segment (\"//\")", ErrBadPath)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w: a %q segment", ErrBadPath, seg)
		}
		start = i + 1
	}
	return nil
}

// Normalize returns the path a lenient server would resolve path to: the
// percent-encoded "/", "\" and unreserved characters decoded, "\" read as
// "/", empty segments merged, and dot segments removed (RFC 3986 §5.2.4).
// For a path in normal form it returns the path itself. Matching a path
// that is not in normal form by this resolution decides whether a dry run
// covers its bad_path denial.
func Normalize(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '%' && i+2 < len(path) && unhex(path[i+1]) >= 0 && unhex(path[i+2]) >= 0 {
			if d := byte(unhex(path[i+1])<<4 | unhex(path[i+2])); d == '/' || d == '\\' || unreserved(d) {
				c = d
				i += 2
			}
		}
		if c == '\\' {
			c = '/'
		}
		b.WriteByte(c)
	}
	var out []string
	segs := strings.Split(b.String(), "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		switch seg {
		case "", ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

// unreserved reports whether c is an RFC 3986 unreserved character.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}
