package route

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrBadPath is wrapped by the errors of CheckPath.
var ErrBadPath = errors.New("path not in normal form")

// CheckPath reports whether path (without its query) is in normal form,
// so that the path a rule sees is the path the upstream resolves: it
// starts with "/", and has no "." or ".." segment, no empty segment ("//";
// a trailing "/" is fine) — nor one that is so but for its ";" parameters
// ("..;x", ";x"), which Tomcat, Jetty and Spring drop before routing — no
// backslash, no "#", no percent-encoded "/", "\\" or unreserved character
// (RFC 3986 §2.3: ALPHA, DIGIT, "-", ".", "_", "~"), which a server decodes
// before it resolves the path, no such character encoded twice ("%252e",
// for a server behind a proxy that decodes once), and no "%C0" or "%C1"
// (never in UTF-8; "%C0%AE" is an old way to write "."). A ";" is fine
// where it does not change the route (Route checks that). An empty path is
// "/". Errors never quote more than the offending segment.
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
			case '#':
				return fmt.Errorf("%w: a \"#\", which starts a fragment and has no place in a request path", ErrBadPath)
			case '%':
				d, ok := pctByte(path, i)
				if !ok {
					return fmt.Errorf("%w: a %% not followed by two hex digits", ErrBadPath)
				}
				switch d2, ok2 := hexByte(path, i+3); {
				case d == '/' || d == '\\' || unreserved(d):
					return fmt.Errorf("%w: %q is an encoded %q", ErrBadPath, path[i:i+3], d)
				case d == '%' && ok2 && (d2 == '/' || d2 == '\\' || d2 == ';' || d2 == '%' || unreserved(d2)):
					return fmt.Errorf("%w: %q decodes twice to %q, as behind a proxy that decodes once", ErrBadPath, path[i:i+5], d2)
				case d == 0xC0 || d == 0xC1:
					return fmt.Errorf("%w: %q is never in UTF-8 (an overlong encoding)", ErrBadPath, path[i:i+3])
				}
			}
			continue
		}
		seg := path[start:i]
		bare, params := cutParams(seg)
		switch {
		case seg == "" && i < len(path):
			return fmt.Errorf("%w: an empty segment (\"//\")", ErrBadPath)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w: a %q segment", ErrBadPath, seg)
		case params && (bare == "." || bare == ".." || bare == ""):
			return fmt.Errorf("%w: a segment that is %q but for its \";\" parameters, which some servers drop", ErrBadPath, bare)
		}
		start = i + 1
	}
	return nil
}

// cutParams returns segment up to its first ";" or "%3B", and whether it
// had one.
func cutParams(seg string) (string, bool) {
	for i := 0; i < len(seg); i++ {
		if seg[i] == ';' {
			return seg[:i], true
		}
		if d, ok := pctByte(seg, i); ok && d == ';' {
			return seg[:i], true
		}
	}
	return seg, false
}

// hasParams reports whether path holds a ";" or "%3B".
func hasParams(path string) bool {
	_, params := cutParams(path)
	return params
}

// pctByte decodes the "%XX" at s[i], if there is one.
func pctByte(s string, i int) (byte, bool) {
	if i >= len(s) || s[i] != '%' {
		return 0, false
	}
	return hexByte(s, i+1)
}

// hexByte decodes the two hex digits at s[i], if they are there.
func hexByte(s string, i int) (byte, bool) {
	if i < 0 || i+1 >= len(s) || unhex(s[i]) < 0 || unhex(s[i+1]) < 0 {
		return 0, false
	}
	return byte(unhex(s[i])<<4 | unhex(s[i+1])), true
}

// reading is one way a server may resolve a path before it serves it.
// Every server removes dot segments (RFC 3986 §5.2.4); these are the steps
// on which servers differ.
type reading struct {
	decode    bool // percent-encoded "/", "\", ";" and unreserved characters decoded
	backslash bool // "\" read as "/"
	merge     bool // empty segments merged ("//" as "/")
	params    bool // a segment's ";" parameters dropped
}

// lenient is the reading of the most lenient server: every step.
var lenient = reading{decode: true, backslash: true, merge: true, params: true}

// Normalize returns the path the most lenient server resolves path to:
// ended at a "#", the percent-encoded "/", "\", ";" and unreserved
// characters decoded, "\" read as "/", empty segments merged, ";"
// parameters dropped, and dot segments removed (RFC 3986 §5.2.4). For a
// path in normal form without ";" it returns the path itself.
func Normalize(path string) string { return resolve(path, lenient) }

// resolve returns path as a server that takes the steps of r resolves it.
// Every reading ends the path at a "#".
func resolve(path string, r reading) string {
	path, _, _ = strings.Cut(path, "#")
	var b strings.Builder
	b.Grow(len(path))
	for i := 0; i < len(path); i++ {
		c := path[i]
		if d, ok := pctByte(path, i); r.decode && ok && (d == '/' || d == '\\' || d == ';' || unreserved(d)) {
			c = d
			i += 2
		}
		if r.backslash && c == '\\' {
			c = '/'
		}
		b.WriteByte(c)
	}
	segs := strings.Split(b.String(), "/")
	out := make([]string, 0, len(segs))
	for i, seg := range segs {
		if i == 0 && seg == "" {
			continue // before the leading "/"
		}
		if r.params {
			seg, _, _ = strings.Cut(seg, ";")
		}
		last := i == len(segs)-1
		switch {
		case seg == "." || seg == "" && (r.merge || last):
			if last {
				out = append(out, "")
			}
		case seg == "..":
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

// readings are the ways of resolving a path that MatchBad tries, the most
// lenient first.
var readings = func() []reading {
	var rs []reading
	for i := 15; i >= 0; i-- {
		rs = append(rs, reading{decode: i&8 != 0, backslash: i&4 != 0, merge: i&2 != 0, params: i&1 != 0})
	}
	return rs
}()

// maxReadPath bounds the paths MatchBad reads every way; a longer one is
// never covered by a dry run.
const maxReadPath = 2048

// MatchBad returns the rule that answers a request Route refused, and
// whether a dry run covers the refusal. The rule is that of the request as
// the most lenient server reads it — the path resolved, the method in
// upper case — unless the request as sent, or as another server reads it
// (one that decodes less, merges no slashes or keeps ";" parameters), falls
// under a rule not in dry run: then the first such rule. A dry run covers
// the refusal only when every reading lies in a route in dry run and the
// path holds nothing that might climb to a parent on some server (see
// mayClimb): "/admin/..%2Fbeta" is under /admin for a server that keeps
// "%2F", and never rides a dry run on /beta.
func (t *Table) MatchBad(r *Request) (rule *Rule, dryRun bool) {
	req := *r
	req.Method = upperASCII(r.Method)
	req.Path = resolve(r.Path, lenient)
	rule = t.Match(&req)
	if !t.anyDryRun || !rule.DryRun {
		return rule, false // the common case: one reading decides
	}
	if len(r.Path) > maxReadPath {
		return rule, false // not read 34 ways: each way may run every regex over it
	}
	paths := []string{req.Path}
	for _, rd := range readings[1:] {
		if p := resolve(r.Path, rd); !slices.Contains(paths, p) {
			paths = append(paths, p)
		}
	}
	if !slices.Contains(paths, r.Path) {
		paths = append(paths, r.Path)
	}
	methods := []string{req.Method}
	if r.Method != req.Method {
		methods = append(methods, r.Method)
	}
	for _, m := range methods {
		for _, p := range paths {
			req.Method, req.Path = m, p
			if other := t.Match(&req); !other.DryRun {
				return other, false
			}
		}
	}
	return rule, !mayClimb(r.Path)
}

// mayClimb reports whether some server might read a segment of path as
// "..": it holds "..", an encoded "." ("%2e", or IIS's "%u002e"), a double
// encoding ("%25"), or a "#" (nginx stops at a fragment after resolving
// what precedes it). A dry run never covers such a path, whatever the
// readings say: the list of servers is never complete.
func mayClimb(path string) bool {
	lower := strings.ToLower(path)
	return strings.Contains(lower, "..") || strings.Contains(lower, "%2e") ||
		strings.Contains(lower, "%u") || strings.Contains(lower, "%25") || strings.Contains(lower, "#")
}

// ErrBadMethod is wrapped by the errors of CheckMethod and Route.
var ErrBadMethod = errors.New("bad method")

// CheckMethod reports whether method is an RFC 9110 token. An empty
// method (a CheckRequest without one) is fine.
func CheckMethod(method string) error {
	for i := 0; i < len(method); i++ {
		if !tchar(method[i]) {
			return fmt.Errorf("%w: byte %d of the method is not allowed in a method (RFC 9110 §5.6.2)", ErrBadMethod, i)
		}
	}
	return nil
}

// upperASCII returns s with its ASCII letters in upper case, s itself when
// it has none in lower case.
func upperASCII(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return 'a' <= r && r <= 'z' }) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// tchar reports whether c may be in an RFC 9110 token.
func tchar(c byte) bool {
	return unreserved(c) || strings.IndexByte("!#$%&'*+^`|", c) >= 0
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
