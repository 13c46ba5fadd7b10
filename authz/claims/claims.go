// Package claims validates a token's claims against a JSON Schema compiled
// once at start-up.
package claims

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// DefaultSchema is used when a provider names no schema file: the claims of
// the original setup, username a string and exp an integer, both required.
const DefaultSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "username": {"type": "string"},
    "exp": {"type": "integer"}
  },
  "required": ["username", "exp"]
}`

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("Invalid JWT schema") //nolint:staticcheck // the product's own wording

// Error is a claims validation failure. Its message starts with
// "Invalid JWT schema:" and names the claim and the rule that failed.
type Error struct {
	Claim string // JSON pointer-like path of the failing claim, "" for the root
	Rule  string // the schema keyword, e.g. "required", "type"
	Msg   string
}

func (e *Error) Error() string {
	claim := e.Claim
	if claim == "" {
		claim = "(claims)"
	}
	return fmt.Sprintf("Invalid JWT schema: %s: %s (%s)", claim, e.Msg, e.Rule)
}

func (e *Error) Unwrap() error { return ErrInvalid }

// Schema is a compiled claims schema.
type Schema struct {
	s *jsonschema.Schema
}

// Compile compiles the schema in path, or DefaultSchema when path is "".
func Compile(path string) (*Schema, error) {
	data := []byte(DefaultSchema)
	loc := "jwtauthz:default-claims-schema.json"
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, err
		}
		loc = path
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: decode JSON: %w", loc, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{}) // a schema never reaches the network or other files
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("%s: compile: %w", loc, err)
	}
	return &Schema{s: s}, nil
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("loading %q is not allowed: a claims schema must be self-contained", url)
}

var printer = message.NewPrinter(language.English)

// Validate checks claims. They must be plain JSON values (map[string]any,
// []any, string, bool, nil and json.Number or float64): jsonschema silently
// skips object rules for other map types, so callers convert first.
func (s *Schema) Validate(claims map[string]any) error {
	err := s.s.Validate(claims)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	leaf := firstLeaf(ve)
	e := &Error{
		Claim: strings.Join(leaf.InstanceLocation, "."),
		Rule:  strings.Join(leaf.ErrorKind.KeywordPath(), "/"),
		Msg:   leaf.ErrorKind.LocalizedString(printer),
	}
	if e.Rule == "required" && e.Claim == "" {
		// Name the missing claim itself rather than the object holding it.
		e.Claim = missingName(e.Msg)
	}
	return e
}

// firstLeaf returns the deepest first cause: the concrete rule that failed.
func firstLeaf(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	for len(e.Causes) > 0 {
		e = e.Causes[0]
	}
	return e
}

// missingName extracts the quoted names from a "missing property 'x'" message.
func missingName(msg string) string {
	i := strings.IndexAny(msg, "'\"")
	if i < 0 {
		return ""
	}
	return strings.NewReplacer("'", "", "\"", "").Replace(msg[i:])
}
