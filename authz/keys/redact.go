package keys

import (
	"context"
	"errors"
	"net/url"
	"strings"
)

// RedactURL returns raw fit for a log line or an error: user-info (a
// password, or a token used as a user name) and the query (API keys,
// signatures) are replaced by "REDACTED", and a fragment is dropped. A
// string that does not parse as a URL is not shown at all.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "REDACTED", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// scrub returns err without the URL that net/http puts in its errors
// (which keeps the user name and the query). Context errors stay
// recognizable with errors.Is.
func scrub(err error, raw string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if secret := secretParts(raw); secret != nil {
		msg := err.Error()
		for _, s := range secret {
			msg = strings.ReplaceAll(msg, s, "REDACTED")
		}
		if msg != err.Error() {
			return &scrubbed{msg: msg, err: unwrapContext(err)}
		}
	}
	return err
}

// secretParts returns the substrings of raw that must never be shown.
func secretParts(raw string) []string {
	var out []string
	if _, rest, ok := strings.Cut(raw, "://"); ok {
		authority, _, _ := strings.Cut(rest, "/")
		if i := strings.LastIndex(authority, "@"); i > 0 {
			out = append(out, authority[:i])
		}
	}
	if _, q, ok := strings.Cut(raw, "?"); ok {
		q, _, _ = strings.Cut(q, "#")
		if q != "" {
			out = append(out, q)
		}
	}
	return out
}

// scrubbed is an error whose text had secrets removed; it unwraps only to
// a context error, never to the original text.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

func unwrapContext(err error) error {
	for _, target := range []error{context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, target) {
			return target
		}
	}
	return nil
}
