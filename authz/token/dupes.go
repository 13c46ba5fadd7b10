package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// errTrailing: a second JSON text, or anything but white space, after the
// first.
var errTrailing = errors.New("data after the JSON object")

// duplicateName returns the first member name that appears twice in one
// object of the JSON document data, at any depth. RFC 7519 §4 allows a
// parser to keep the last duplicate, as encoding/json does; jwtauthz refuses
// them instead, since two verifiers of one token could read different
// claims. Data after the document's one JSON text is errTrailing:
// encoding/json reads the first text and ignores the rest, which an
// upstream reading a forwarded payload might not.
func duplicateName(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	done := false // one whole JSON text has been read
	type frame struct {
		object bool
		names  map[string]struct{}
		key    bool // the next token in this object is a member name
	}
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		if done {
			return "", errTrailing
		}
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			name, ok := tok.(string)
			if !ok { // the closing brace
				stack = stack[:len(stack)-1]
				done = len(stack) == 0
				continue
			}
			if _, dup := top.names[name]; dup {
				return name, nil
			}
			top.names[name] = struct{}{}
			top.key = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			if top != nil && top.object {
				top.key = true
			}
			stack = append(stack, frame{object: true, names: map[string]struct{}{}, key: true})
			continue
		case json.Delim('['):
			if top != nil && top.object {
				top.key = true
			}
			stack = append(stack, frame{})
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) == 0 {
			done = true // a scalar or an array was the whole text
		}
		if top != nil && top.object {
			top.key = true // a value was read; a name comes next
		}
	}
}

// checkDuplicates refuses a token whose header or payload repeats a member
// name, holds data after its JSON object, or is not UTF-8 (encoding/json
// would read each invalid byte as U+FFFD, so two distinct usernames could
// become one user; a payload that is not UTF-8 is a claims failure).
func checkDuplicates(p interface{ DecodeSegment(string) ([]byte, error) }, parts []string) error {
	for i, what := range []string{"header", "payload"} {
		seg, err := p.DecodeSegment(parts[i])
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
		}
		if !utf8.Valid(seg) {
			if what == "payload" {
				return fmt.Errorf("%w: claims: not valid UTF-8 (RFC 8259 §8.1)", ErrClaims)
			}
			return fmt.Errorf("%w: header: not valid UTF-8", ErrMalformed)
		}
		name, err := duplicateName(seg)
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
		}
		if name != "" {
			return fmt.Errorf("%w: %s repeats the member %.64q", ErrMalformed, what, name)
		}
	}
	return nil
}
