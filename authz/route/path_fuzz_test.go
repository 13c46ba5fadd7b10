package route

import (
	"strings"
	"testing"
)

// FuzzPath feeds arbitrary paths to CheckPath, Normalize, Match and
// MatchBad. None may panic; no path CheckPath accepts may resolve, once
// percent-decoded and its dot segments removed (RFC 3986 §5.2.4), outside
// a prefix it matched: a rule for /public never covers a private path; and
// a dry run covers no path that resolves outside a dry-run route.
func FuzzPath(f *testing.F) {
	for _, seed := range []string{
		"/public/x", "/public/../admin", "/public/%2e%2e/admin", "/public%2f..%2fadmin", "/public\\..\\admin",
		"//public", "/public/./x", "/api/v1/orders/42", "/p%75blic/x", "/public/%252e%252e", "/public/..%3B/admin",
		"/public;/../admin", "/", "", "/public%00/x", "/dry/./x", "/dry/../x", "/x/..%2Fdry", "/dry/x#/../../y", "/public;x", "/dry;x/y", "/public/%252e%252e/x",
	} {
		f.Add(seed)
	}
	prefixes := []string{"/public", "/api/v1", "/a", "/"}
	tb, err := Compile([]Spec{
		{Rule: Rule{Name: "public"}, Match: Match{PathPrefixes: []string{"/public"}}},
		{Rule: Rule{Name: "regex"}, Match: Match{PathRegex: `/api/v[0-9]+/.*`}},
		{Rule: Rule{Name: "dry", DryRun: true}, Match: Match{PathPrefixes: []string{"/dry"}}},
	}, Rule{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path string) {
		tb.Match(&Request{Path: path})
		tb.Match(&Request{Path: Normalize(path)})
		resolved := removeDotSegments(percentDecode(path))
		if rule, covered := tb.MatchBad(&Request{Path: path}); covered {
			// A dry run covers a bad path only if the path resolved by
			// this test's own reading also lies in a dry-run route.
			if !rule.DryRun || !tb.Match(&Request{Path: resolved}).DryRun {
				t.Fatalf("MatchBad(%q) covers it by %q, but it resolves to %q under %q", path, rule.Name, resolved, tb.Match(&Request{Path: resolved}).Name)
			}
		}
		if CheckPath(path) != nil {
			return
		}
		for _, p := range prefixes {
			if HasPrefix(path, p) && !HasPrefix(resolved, p) {
				t.Fatalf("%q is accepted and matches prefix %q, but resolves to %q", path, p, resolved)
			}
		}
		if path != "" && !hasParams(path) && Normalize(path) != path {
			t.Fatalf("%q is accepted but Normalize changes it to %q", path, Normalize(path))
		}
		// A request Route judges gets the rule the most lenient server's
		// reading gets.
		if rule, err := tb.Route(&Request{Path: path}); err == nil {
			if lenient := tb.Match(&Request{Path: Normalize(path)}); lenient != rule {
				t.Fatalf("Route(%q) = %q, but its lenient reading %q falls under %q", path, rule.Name, Normalize(path), lenient.Name)
			}
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
