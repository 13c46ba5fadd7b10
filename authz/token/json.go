package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A JSON decoder for the token's header and payload: one pass that builds
// the values encoding/json would (objects as map[string]any, arrays as
// []any, numbers as json.Number or float64) and notes the first member
// name repeated within one object, at any depth. It accepts exactly the
// texts encoding/json accepts and decodes strings as it does (invalid
// surrogate escapes become U+FFFD), so a token means what it meant when
// golang-jwt decoded it; it only stops decoding twice.

// maxDepth is encoding/json's nesting limit. A token of MaxSize cannot
// reach it; it bounds the recursion all the same.
const maxDepth = 10000

// jsonError is a syntax error at an offset of the decoded segment.
type jsonError struct {
	msg string
	off int
}

func (e *jsonError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.off) }

var errDepth = errors.New("exceeded max depth")

type decoder struct {
	data  []byte
	pos   int
	float bool // numbers as float64 (golang-jwt's header) instead of json.Number
	depth int
	dup   string // the first repeated member name, in document order
	dups  bool   // dup is set (a name may be "")
	err   error  // a number float64 cannot hold (float only)
}

func (d *decoder) syntax(msg string) error {
	return &jsonError{msg: msg, off: d.pos}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *decoder) skipSpace() {
	for d.pos < len(d.data) && isSpace(d.data[d.pos]) {
		d.pos++
	}
}

// value decodes the value at d.pos; white space before it is skipped.
func (d *decoder) value() (any, error) {
	d.skipSpace()
	if d.pos >= len(d.data) {
		return nil, d.syntax("unexpected end of JSON input")
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		return d.str()
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, d.syntax(fmt.Sprintf("invalid character %q looking for beginning of value", d.data[d.pos]))
}

func (d *decoder) literal(lit string) error {
	if len(d.data)-d.pos < len(lit) || string(d.data[d.pos:d.pos+len(lit)]) != lit {
		return d.syntax("invalid literal")
	}
	d.pos += len(lit)
	return nil
}

func (d *decoder) object() (any, error) {
	m := make(map[string]any)
	err := d.elements('}', "after object key:value pair", func() error {
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return d.syntax("looking for beginning of object key string")
		}
		name, err := d.str()
		if err != nil {
			return err
		}
		d.skipSpace()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return d.syntax("after object key")
		}
		d.pos++
		v, err := d.value()
		if err != nil {
			return err
		}
		if _, dup := m[name]; dup && !d.dups {
			d.dup, d.dups = name, true
		}
		m[name] = v // the last one wins, as in encoding/json
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (d *decoder) array() (any, error) {
	a := make([]any, 0)
	err := d.elements(']', "after array element", func() error {
		v, err := d.value()
		if err != nil {
			return err
		}
		a = append(a, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// elements reads the comma-separated elements of the object or array that
// opens at d.pos, each with elem, through its closing byte. after is the
// syntax error for anything else after an element.
func (d *decoder) elements(closing byte, after string, elem func() error) error {
	if d.depth++; d.depth > maxDepth {
		return errDepth
	}
	d.pos++ // { or [
	d.skipSpace()
	if d.pos < len(d.data) && d.data[d.pos] == closing {
		d.pos++
		d.depth--
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		d.skipSpace()
		if d.pos >= len(d.data) {
			return d.syntax("unexpected end of JSON input")
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case closing:
			d.pos++
			d.depth--
			return nil
		default:
			return d.syntax(after)
		}
	}
}

// str decodes the string at d.pos (its opening quote).
func (d *decoder) str() (string, error) {
	start := d.pos
	d.pos++
	plain := true // no escape and valid UTF-8: the bytes are the string
	for {
		if d.pos >= len(d.data) {
			return "", d.syntax("unexpected end of JSON input")
		}
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			if plain {
				return string(d.data[start+1 : d.pos-1]), nil
			}
			s, ok := unquote(d.data[start+1 : d.pos-1])
			if !ok {
				return "", d.syntax("invalid string")
			}
			return s, nil
		case c == '\\':
			plain = false
			d.pos++
			if d.pos >= len(d.data) {
				return "", d.syntax("unexpected end of JSON input")
			}
			switch d.data[d.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos++
			case 'u':
				d.pos++
				for range 4 {
					if d.pos >= len(d.data) || !isHex(d.data[d.pos]) {
						return "", d.syntax("invalid character in \\u hexadecimal character escape")
					}
					d.pos++
				}
			default:
				return "", d.syntax("invalid character in string escape code")
			}
		case c < ' ':
			return "", d.syntax("invalid character in string literal")
		case c < utf8.RuneSelf:
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size == 1 {
				plain = false
			}
			d.pos += size
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// number decodes a number as encoding/json's grammar has it:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) number() (any, error) {
	start := d.pos
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.pos < len(d.data) && isDigit(d.data[d.pos]):
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			d.pos++
		}
	default:
		return nil, d.syntax("in numeric literal")
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if d.pos >= len(d.data) || !isDigit(d.data[d.pos]) {
			return nil, d.syntax("after decimal point in numeric literal")
		}
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			d.pos++
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.pos >= len(d.data) || !isDigit(d.data[d.pos]) {
			return nil, d.syntax("in exponent of numeric literal")
		}
		for d.pos < len(d.data) && isDigit(d.data[d.pos]) {
			d.pos++
		}
	}
	lit := string(d.data[start:d.pos])
	if !d.float {
		return json.Number(lit), nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		// encoding/json decodes on and reports this at the end.
		if d.err == nil {
			d.err = fmt.Errorf("cannot unmarshal number %s into Go value of type float64", lit)
		}
		return nil, nil
	}
	return f, nil
}

// decodeHeader decodes a JWS header as golang-jwt does (json.Unmarshal into
// a map): one JSON text, white space around it, an object or null (nil),
// numbers as float64. dup is the first repeated member name.
func decodeHeader(data []byte) (header map[string]any, dup string, hasDup bool, err error) {
	d := decoder{data: data, float: true}
	v, err := d.value()
	if err != nil {
		return nil, "", false, err
	}
	d.skipSpace()
	if d.pos < len(d.data) {
		return nil, "", false, d.syntax(fmt.Sprintf("invalid character %q after top-level value", d.data[d.pos]))
	}
	if d.err != nil {
		return nil, "", false, d.err
	}
	switch v := v.(type) {
	case map[string]any:
		return v, d.dup, d.dups, nil
	case nil:
		return nil, d.dup, d.dups, nil
	}
	return nil, "", false, fmt.Errorf("cannot unmarshal %s into Go value of type map[string]interface {}", kind(v))
}

// decodeClaims decodes a JWT payload as golang-jwt does (a json.Decoder
// with UseNumber, into a map): the first JSON text only, an object or null
// (no claims). end is the offset after that text: what follows is not
// read, and the caller refuses all but white space.
func decodeClaims(data []byte) (claims map[string]any, end int, dup string, hasDup bool, err error) {
	d := decoder{data: data}
	d.skipSpace()
	if d.pos >= len(d.data) {
		return nil, 0, "", false, errors.New("EOF")
	}
	v, err := d.value()
	if err != nil {
		return nil, 0, "", false, err
	}
	switch v := v.(type) {
	case map[string]any:
		return v, d.pos, d.dup, d.dups, nil
	case nil:
		// null leaves golang-jwt's claims empty; json.Decoder reports what
		// follows it only on its next Decode.
		return map[string]any{}, d.pos, "", false, nil
	}
	return nil, 0, "", false, fmt.Errorf("cannot unmarshal %s into Go value of type jwt.MapClaims", kind(v))
}

func kind(v any) string {
	switch v.(type) {
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "bool"
	}
	return "number"
}

// onlySpace reports whether b holds nothing but JSON white space.
func onlySpace(b []byte) bool {
	for _, c := range b {
		if !isSpace(c) {
			return false
		}
	}
	return true
}

// escapes maps the byte after a backslash to the byte it stands for, for
// JSON's one-byte escapes; 0 for the rest.
var escapes = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

// unquote decodes the body of a string that str has scanned and found to
// hold an escape or invalid UTF-8. Invalid UTF-8 and a surrogate escape
// that is not half of a pair become U+FFFD, as in encoding/json (utf8
// encodes both as RuneError). ok is false only if s was not scanned by
// str: every escape there is whole.
func unquote(s []byte) (string, bool) {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c != '\\':
			r, n := rune(c), 1
			if c >= utf8.RuneSelf {
				r, n = utf8.DecodeRune(s[i:])
			}
			b = utf8.AppendRune(b, r)
			i += n
		case i+1 < len(s) && escapes[s[i+1]] != 0:
			b = append(b, escapes[s[i+1]])
			i += 2
		default:
			r, ok := escapedRune(s[i:])
			if !ok {
				return "", false
			}
			i += 6
			if utf16.IsSurrogate(r) {
				if low, ok := escapedRune(s[i:]); ok {
					if pair := utf16.DecodeRune(r, low); pair != utf8.RuneError {
						r = pair
						i += 6
					}
				}
			}
			b = utf8.AppendRune(b, r)
		}
	}
	return string(b), true
}

// escapedRune reads the \uXXXX escape that s starts with.
func escapedRune(s []byte) (rune, bool) {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range s[2:6] {
		var v byte
		switch {
		case isDigit(c):
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}
