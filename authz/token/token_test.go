package token

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/jwtauthz/jwtauthz/authz/keys"
)

func TestLookup(t *testing.T) {
	claims := map[string]any{
		"email":        "a@example.com",
		"realm_access": map[string]any{"roles": []any{"x", "y"}},
		"dotted.name":  "literal",
		// A flat claim named like a nested path must never stand in for it.
		"realm_access.roles": "ops",
		"other.roles":        "ops",
	}
	tests := []struct {
		path   string
		want   any
		wantOK bool
	}{
		{"email", "a@example.com", true},
		{"realm_access.roles", []any{"x", "y"}, true},
		{"dotted.name", nil, false},
		{"other.roles", nil, false},
		{"[dotted.name]", "literal", true},
		{"[realm_access.roles]", "ops", true},
		{"[realm_access].roles", []any{"x", "y"}, true},
		{"[email]", "a@example.com", true},
		{"[dotted.name", nil, false},
		{"[]", nil, false},
		{"email.", nil, false},
		{".email", nil, false},
		{"[email]x", nil, false},
		{"realm_access.missing", nil, false},
		{"email.deeper", nil, false},
		{"absent", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			got, ok := Lookup(claims, tc.path)
			if ok != tc.wantOK {
				t.Fatalf("Lookup(%q) ok = %v, want %v", tc.path, ok, tc.wantOK)
			}
			if !cmp.Equal(got, tc.want) {
				t.Errorf("Lookup(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

func TestRouter(t *testing.T) {
	secret := func(c byte) []byte { return []byte(strings.Repeat(string(c), 32)) }
	now := time.Unix(1_800_000_000, 0)
	provider := func(name, iss string, c byte) *Verifier {
		return NewVerifier(Options{
			Provider: name, Issuer: iss, Algorithms: []string{"HS256"},
			Keys: keys.NewStatic(keys.NewSet([]keys.Key{{Public: secret(c)}}, 1)),
			Now:  func() time.Time { return now },
		})
	}
	if _, err := NewRouter([]*Verifier{provider("x", "", 'x'), provider("y", "", 'y')}); err == nil {
		t.Error("two providers without issuer: want an error")
	}
	if _, err := NewRouter([]*Verifier{provider("x", "https://a", 'x'), provider("y", "https://a", 'y')}); err == nil {
		t.Error("two providers with one issuer: want an error")
	}
	r, err := NewRouter([]*Verifier{provider("a", "https://a", 'a'), provider("b", "https://b", 'b'), provider("any", "", 'z')})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, iss    string
		signer       byte
		wantProvider string
		wantErr      error
	}{
		{"issuer a", "https://a", 'a', "a", nil},
		{"issuer b", "https://b", 'b', "b", nil},
		{"unknown issuer goes to the provider without one", "https://c", 'z', "any", nil},
		{"no iss goes to the provider without one", "", 'z', "any", nil},
		{"issuer a signed with b's secret", "https://a", 'b', "a", ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := jwt.MapClaims{"username": "u", "exp": now.Add(time.Hour).Unix()}
			if tc.iss != "" {
				c["iss"] = tc.iss
			}
			raw, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret(tc.signer))
			if err != nil {
				t.Fatal(err)
			}
			res, provider, err := r.Verify(context.Background(), raw)
			if provider != tc.wantProvider {
				t.Errorf("routed to %q, want %q", provider, tc.wantProvider)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && (res.Provider != tc.wantProvider || res.Username != "u") {
				t.Errorf("result = %+v", res)
			}
		})
	}
}
