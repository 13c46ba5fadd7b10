package route

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/jwtauthz/jwtauthz/authz/token"
)

// Require is what a verified token must hold on a route: every condition.
type Require struct {
	// Scopes must each be among the token's scopes: its "scope" claim
	// (space-separated) and its "scp" claim (a list, or space-separated as
	// Okta and Entra ID send it).
	Scopes []string
	// Claims must each hold (ClaimCondition).
	Claims []ClaimCondition
	// Providers, when set, are the only providers whose tokens may pass.
	Providers []string
}

// ClaimCondition holds when the claim at Path, a dotted path through
// nested objects, equals one of Accept, or is a list that contains one of
// them. Values are strings, booleans or numbers; numbers compare by value
// (1 equals 1.0), and a number never equals a string.
type ClaimCondition struct {
	Path   string
	Accept []any
	accept []any // Accept as comparable scalars
}

// Empty reports whether r asks for nothing.
func (r *Require) Empty() bool {
	return len(r.Scopes) == 0 && len(r.Claims) == 0 && len(r.Providers) == 0
}

func (r *Require) compile() error {
	for i := range r.Claims {
		if err := r.Claims[i].Compile(); err != nil {
			return err
		}
	}
	return nil
}

// Compile checks the accepted values; the error names the claim path.
func (c *ClaimCondition) Compile() error {
	if !token.ValidPath(c.Path) {
		return fmt.Errorf("require.claims: %q is not a dotted claim path (a name with dots goes in brackets: [https://example.com/roles])", c.Path)
	}
	if len(c.Accept) == 0 {
		return fmt.Errorf("require.claims.%s: name a value, or a list of accepted values", c.Path)
	}
	c.accept = c.accept[:0]
	for _, v := range c.Accept {
		s, ok := scalar(v)
		if !ok {
			return fmt.Errorf("require.claims.%s: want a string, number or boolean, or a list of them; got %s", c.Path, describe(v))
		}
		c.accept = append(c.accept, s)
	}
	return nil
}

// Holds reports whether the claim value v (nil when the claim is absent)
// meets the condition.
func (c *ClaimCondition) Holds(v any) bool {
	if list, ok := v.([]any); ok {
		return slices.ContainsFunc(list, c.equalsOne)
	}
	return c.equalsOne(v)
}

func (c *ClaimCondition) equalsOne(v any) bool {
	got, ok := scalar(v)
	if !ok {
		return false
	}
	for _, want := range c.accept {
		if w, isNum := want.(*big.Rat); isNum {
			if g, ok := got.(*big.Rat); ok && g.Cmp(w) == 0 {
				return true
			}
			continue
		}
		if got == want {
			return true
		}
	}
	return false
}

// Token is what the conditions read of a verified token.
type Token interface {
	Provider() string
	// Scopes are the token's scopes (see Require.Scopes).
	Scopes() []string
	// Claim returns the claim at a dotted path, through nested objects
	// only.
	Claim(path string) (any, bool)
}

// Errors of Check, told apart with errors.Is.
var (
	// ErrInsufficientScope: a scope is missing (RFC 6750 §3.1).
	ErrInsufficientScope = errors.New("insufficient scope")
	// ErrForbidden: a claim or provider condition does not hold.
	ErrForbidden = errors.New("forbidden")
)

// ScopeError names the scopes a token lacks, and every scope the route
// asks for (the www-authenticate scope attribute).
type ScopeError struct {
	Route   string
	Missing []string
	Scopes  []string
}

func (e *ScopeError) Error() string {
	return fmt.Sprintf("route %q requires the scope %s; the token lacks %s",
		e.Route, strings.Join(e.Scopes, " "), strings.Join(e.Missing, " "))
}

func (e *ScopeError) Unwrap() error { return ErrInsufficientScope }

// Check returns nil when t meets every condition of the rule, a
// *ScopeError when a scope is missing, or an error wrapping ErrForbidden
// that names the claim path or provider. Errors name what the route asks
// for, never what the token holds.
func (r *Rule) Check(t Token) error {
	req := &r.Require
	if len(req.Providers) > 0 && !slices.Contains(req.Providers, t.Provider()) {
		return fmt.Errorf("%w: route %q accepts tokens of the providers %q only", ErrForbidden, r.Name, req.Providers)
	}
	if len(req.Scopes) > 0 {
		have := t.Scopes()
		var missing []string
		for _, s := range req.Scopes {
			if !slices.Contains(have, s) {
				missing = append(missing, s)
			}
		}
		if len(missing) > 0 {
			return &ScopeError{Route: r.Name, Missing: missing, Scopes: req.Scopes}
		}
	}
	for i := range req.Claims {
		c := &req.Claims[i]
		v, _ := t.Claim(c.Path)
		if !c.Holds(v) {
			return fmt.Errorf("%w: route %q requires the claim %q to be one of %v", ErrForbidden, r.Name, c.Path, c.Accept)
		}
	}
	return nil
}

// ParseScopes returns the scopes of a token's claims: "scope", a
// space-separated string (RFC 8693 §4.2), and "scp", a list of strings or
// a space-separated string.
func ParseScopes(scope, scp any) []string {
	var out []string
	add := func(v any) {
		switch t := v.(type) {
		case string: // RFC 6749 §3.3: separated by spaces alone
			for scope := range strings.SplitSeq(t, " ") {
				if scope != "" {
					out = append(out, scope)
				}
			}
		case []any:
			for _, e := range t {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	add(scope)
	add(scp)
	return out
}

// scalar returns v as a comparable value: a string, a bool or a *big.Rat
// for any number, from JSON claims (json.Number, float64) or YAML config
// (int, float64, ...). ok is false for anything else.
func scalar(v any) (any, bool) {
	var num string
	switch v := v.(type) {
	case string, bool:
		return v, true
	case json.Number:
		num = v.String()
	case int:
		num = strconv.Itoa(v)
	case int64:
		num = strconv.FormatInt(v, 10)
	case uint64:
		num = strconv.FormatUint(v, 10)
	case float64:
		num = strconv.FormatFloat(v, 'g', -1, 64)
	default:
		return nil, false
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return nil, false
	}
	return r, true
}

func describe(v any) string {
	switch v.(type) {
	case nil:
		return "no value"
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}
