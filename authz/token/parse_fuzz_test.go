package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// referenceParse is how parse judged tokens before it decoded each one
// once: golang-jwt's ParseUnverified, then a second decoding of the header
// and payload walked with json.Decoder.Token for repeated names and
// trailing data. It is the oracle of FuzzParse.
func referenceParse(raw string) (*parsed, error) {
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("%w: too large", ErrMalformed)
	}
	if strings.Count(raw, ".") != 2 {
		return nil, fmt.Errorf("%w: segments", ErrMalformed)
	}
	p := jwt.NewParser(jwt.WithJSONNumber(), jwt.WithStrictDecoding())
	claims := jwt.MapClaims{}
	tok, parts, err := p.ParseUnverified(raw, claims)
	if err != nil && !errors.Is(err, jwt.ErrTokenUnverifiable) {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if tok == nil || tok.Header == nil {
		return nil, fmt.Errorf("%w: no header", ErrMalformed)
	}
	for i, what := range []string{"header", "payload"} {
		seg, err := p.DecodeSegment(parts[i])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
		}
		if !utf8.Valid(seg) {
			if what == "payload" {
				return nil, fmt.Errorf("%w: claims: not valid UTF-8", ErrClaims)
			}
			return nil, fmt.Errorf("%w: header: not valid UTF-8", ErrMalformed)
		}
		name, err := referenceDuplicateName(seg)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
		}
		if name != "" {
			return nil, fmt.Errorf("%w: %s repeats the member %.64q", ErrMalformed, what, name)
		}
	}
	alg, _ := tok.Header["alg"].(string)
	pt := &parsed{header: tok.Header, claims: claims, method: tok.Method, sig: tok.Signature, alg: alg,
		signing: raw[:len(parts[0])+1+len(parts[1])], payload: parts[1]}
	if k, ok := tok.Header["kid"]; ok {
		kid, isString := k.(string)
		if !isString {
			return nil, fmt.Errorf("%w: kid header is not a string", ErrMalformed)
		}
		pt.kid = kid
	}
	return pt, nil
}

// referenceDuplicateName is the json.Decoder.Token walk parse used to make
// a second pass with. It cannot tell a repeated name "" from none; the
// comparison allows for that.
func referenceDuplicateName(data []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	done := false
	type frame struct {
		object bool
		names  map[string]struct{}
		key    bool
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
			if !ok {
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
			done = true
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}

// repeatsEmptyName reports whether the header or payload of raw repeats
// the member name "" before any other name repeats.
func repeatsEmptyName(raw string) bool {
	for _, seg := range strings.SplitN(raw, ".", 3)[:2] {
		b, err := segments.DecodeString(seg)
		if err != nil {
			return false
		}
		d := decoder{data: b}
		if _, err := d.value(); err == nil && d.dups && d.dup == "" {
			return true
		}
	}
	return false
}

// verdict names the sentinel an error of parse wraps.
func verdict(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrClaims):
		return "claims"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return "other: " + err.Error()
}

// parseSeeds are headers and payloads, as JSON, of the parse fuzz targets.
var parseSeeds = [][2]string{
	{`{"alg":"RS256","kid":"k"}`, `{"username":"alice","exp":1,"aud":["a","b"],"n":{"x":[1,2.5e3,-0]}}`},
	{`{"alg":"RS256"}`, `{"a":1,"a":2}`},
	{`{"alg":"RS256"}`, `{"o":{"x":1,"x":2}}`},
	{`{"alg":"RS256","alg":"none"}`, `{}`},
	{`{"alg":"RS256"}`, `{"a":"\u0061\ud800\udc00\ud800x\"\\\/\b\f\n\r\t"}`},
	{`{"alg":"RS256"}`, `{"\ud800":1,"\udfff":2}`},
	{`{"alg":"RS256"}`, `{"a":"\udc00\ud800\u0041\ud83d\ude00\uD83D\uDE00\ud800\ud800\udc00"}`},
	{`{"alg":"RS256"}`, "{\"a\":\"\xff\\n\xe2\x82\"}"},
	{`{"alg":"RS256"} `, "{\"exp\":1}\n"},
	{`{"alg":"RS256"}`, `{"exp":1} {"exp":2}`},
	{`{"alg":"RS256"}`, `{"exp":1}1`},
	{`{"alg":"RS256"}{}`, `{}`},
	{`{"alg":"RS256"}`, `null`},
	{`{"alg":"RS256"}`, `null x`},
	{`{"alg":"RS256"}`, `nullx`},
	{`null`, `{}`},
	{`{"alg":"RS256"}`, "{\"u\":\"\xff\"}"},
	{"{\"alg\":\"RS256\",\"x\":\"\xff\"}", `{}`},
	{`{"alg":"XX1"}`, "{\"u\":\"\xff\"}"},
	{`{"alg":"RS256","n":1e400}`, `{"n":1e400}`},
	{`{"alg":5,"crit":["b64"]}`, `[]`},
	{`{"alg":"RS256","kid":1}`, `{"exp":01}`},
	{`{"alg":"HS256"}`, `{"a":[{"x":1},{"x":1,"y":{"x":[]}}],"b":true,"c":false,"d":null}`},
	{`{"alg":"RS256"}`, `{"":1,"":2} {"username":"admin"}`},
}

// FuzzParse checks that parse judges every token as golang-jwt's
// ParseUnverified and the duplicate check did, and decodes what it accepts
// to the same header, claims, algorithm, kid and signature.
func FuzzParse(f *testing.F) {
	seg := base64.RawURLEncoding.EncodeToString
	tok := func(header, payload string) string {
		return seg([]byte(header)) + "." + seg([]byte(payload)) + "." + seg([]byte("sig"))
	}
	for _, c := range parseSeeds {
		f.Add(tok(c[0], c[1]))
	}
	f.Add(seg([]byte(`{"alg":"RS256"}`)) + "." + seg([]byte(`{}`)) + ".a=")
	f.Add(seg([]byte(`{"alg":"nope"}`)) + "." + seg([]byte(`{}`)) + ".a=")
	f.Add("e30.e30.")
	f.Add("..")
	// The FuzzVerify seeds: real tokens of every algorithm.
	entries, _ := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzVerify"))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerify", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if raw, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[len(lines)-1], "string("), ")")); err == nil {
			f.Add(raw)
		}
	}
	f.Fuzz(compareParse)
}

// FuzzParseJSON is FuzzParse with the header and payload given as the
// bytes they decode to, so mutations reach the JSON decoder.
func FuzzParseJSON(f *testing.F) {
	for _, c := range parseSeeds {
		f.Add(c[0], c[1])
	}
	seg := base64.RawURLEncoding.EncodeToString
	f.Fuzz(func(t *testing.T, header, payload string) {
		compareParse(t, seg([]byte(header))+"."+seg([]byte(payload))+"."+seg([]byte("sig")))
	})
}

func compareParse(t *testing.T, raw string) {
	got, gotErr := parse(raw)
	want, wantErr := referenceParse(raw)
	if g, w := verdict(gotErr), verdict(wantErr); g != w {
		if g == "malformed" && repeatsEmptyName(raw) {
			// The old walk returned "" for a repeated name "", read
			// that as no repetition, and stopped looking (even for
			// data after the payload), so it accepted the token or
			// refused it later for another reason: now malformed.
			return
		}
		t.Fatalf("parse(%q): %s (%v), want %s (%v)", raw, g, gotErr, w, wantErr)
	}
	if gotErr != nil {
		return
	}
	if !reflect.DeepEqual(got.header, want.header) {
		t.Errorf("header: got %#v, want %#v", got.header, want.header)
	}
	if !reflect.DeepEqual(got.claims, want.claims) {
		t.Errorf("claims: got %#v, want %#v", got.claims, want.claims)
	}
	if got.alg != want.alg || got.kid != want.kid || got.method != want.method ||
		!bytes.Equal(got.sig, want.sig) || got.signing != want.signing || got.payload != want.payload {
		t.Errorf("got alg %q kid %q method %v sig %x signing %q payload %q; want %q %q %v %x %q %q",
			got.alg, got.kid, got.method, got.sig, got.signing, got.payload,
			want.alg, want.kid, want.method, want.sig, want.signing, want.payload)
	}
}
