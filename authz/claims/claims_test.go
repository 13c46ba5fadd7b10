package claims

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDefaultSchema(t *testing.T) {
	s, err := Compile("")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, claims string
		wantErr      string // "" for valid
	}{
		{"valid", `{"username":"a","exp":1700000000}`, ""},
		{"extra claims are fine", `{"username":"a","exp":1700000000,"roles":["x"]}`, ""},
		{"username missing", `{"exp":1}`, "Invalid JWT schema: username: missing property 'username' (required)"},
		{"username a number", `{"username":1,"exp":1}`, "Invalid JWT schema: username: got number, want string (type)"},
		{"exp a float", `{"username":"a","exp":1.5}`, "Invalid JWT schema: exp: got number, want integer (type)"},
		{"exp a string", `{"username":"a","exp":"1"}`, "Invalid JWT schema: exp: got string, want integer (type)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Validate(decode(t, tc.claims))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("Validate = %v, want %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid")
			}
		})
	}
}

// TestObjectRulesApplyToConvertedClaims guards the trap STYLE.md names:
// jsonschema walks only plain map[string]any, so jwt.MapClaims passed as is
// would skip every object rule. Callers convert; this shows why.
func TestObjectRulesApplyToConvertedClaims(t *testing.T) {
	s, err := Compile("")
	if err != nil {
		t.Fatal(err)
	}
	mc := jwt.MapClaims{"exp": json.Number("1")} // username missing
	if err := s.Validate(map[string]any(mc)); err == nil {
		t.Fatal("converted MapClaims without username validated; object rules were skipped")
	}
}

func TestCompileFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	nested := write("nested.json", `{"type":"object","required":["realm_access"],
	  "properties":{"realm_access":{"type":"object","required":["roles"],"properties":{"roles":{"type":"array","items":{"type":"string"}}}}}}`)
	s, err := Compile(nested)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Validate(decode(t, `{"realm_access":{"roles":["a",2]}}`))
	if err == nil || !strings.HasPrefix(err.Error(), "Invalid JWT schema: realm_access.roles.1:") {
		t.Errorf("nested failure = %v, want it to name realm_access.roles.1", err)
	}

	for name, body := range map[string]string{
		"not JSON":            `{`,
		"not a schema":        `{"type":"nonsense"}`,
		"remote $ref refused": `{"$ref":"https://example.com/schema.json"}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := write("bad.json", body)
			if _, err := Compile(p); err == nil || !strings.Contains(err.Error(), p) {
				t.Errorf("Compile = %v, want an error naming %s", err, p)
			}
		})
	}
}
