package route

import (
	"strings"
	"testing"
)

// FuzzPath feeds arbitrary paths to CheckPath, Normalize and Match. None may
// panic, and no path CheckPath accepts may resolve, once percent-decoded
// and its dot segments removed (RFC 3986 §5.2.4), outside a prefix it
// matched: a rule for /public never covers a private path.
func FuzzPath(f *testing.F) {
	for _, seed := range []string{
		"/public/x", "/public/../admin", "/public/%2e%2e/admin", "/public%2f..%2fadmin", "/public\\..\\admin",
		"//public", "/public/./x", "/api/v1/orders/42", "/p%75blic/x", "/public/%252e%252e", "/public/..%3B/admin",
		"/public;/../admin", "/", "", "/public%00/x",
	} {
		f.Add(seed)
	}
	prefixes := []string{"/public", "/api/v1", "/a", "/"}
	tb, err := Compile([]Spec{
		{Rule: Rule{Name: "public"}, Match: Match{PathPrefixes: []string{"/public"}}},
		{Rule: Rule{Name: "regex"}, Match: Match{PathRegex: `/api/v[0-9]+/.*`}},
	}, Rule{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path string) {
		tb.Match(&Request{Path: path})
		tb.Match(&Request{Path: Normalize(path)})
		tb.MatchBadPath(&Request{Path: path})
		if CheckPath(path) != nil {
			return
		}
		resolved := removeDotSegments(percentDecode(path))
		for _, p := range prefixes {
			if HasPrefix(path, p) && !HasPrefix(resolved, p) {
				t.Fatalf("%q is accepted and matches prefix %q, but resolves to %q", path, p, resolved)
			}
		}
		if path != "" && Normalize(path) != path {
			t.Fatalf("%q is accepted but Normalize changes it to %q", path, Normalize(path))
		}
	})
}

// percentDecode decodes every %XX, as a server would before it resolves
// the path; malformed escapes stay as they are.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0 {
			b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeDotSegments is RFC 3986 §5.2.4, step by step, written apart from
// Normalize so the two can disagree.
func removeDotSegments(in string) string {
	var out []string // output buffer segments, each with its leading "/"
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			i := strings.IndexByte(in[1:], '/')
			if i < 0 {
				out = append(out, in)
				in = ""
			} else {
				out = append(out, in[:i+1])
				in = in[i+1:]
			}
		}
	}
	return strings.Join(out, "")
}
