package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/store"
)

// caller is an authenticated admin caller.
type caller struct {
	provider, username string
	fingerprint        string // of the token, for logs
}

func (c *caller) attrs() slog.Attr {
	return slog.Group("caller", "provider", c.provider, "user", c.username, "token_sha256", c.fingerprint)
}

// authorize authenticates the caller of method from the "authorization"
// metadata: exactly one Bearer token, verified like a Check's, holding every
// required claim, of a user who is not deactivated. It returns a gRPC status
// error: UNAUTHENTICATED without a valid token, PERMISSION_DENIED without
// the rights, UNAVAILABLE when no key or store could be reached.
func (s *Server) authorize(ctx context.Context, method string) (*caller, error) {
	raw, err := bearer(ctx)
	if err != nil {
		s.log.InfoContext(ctx, "admin call refused", "method", method, "reason", string(authz.ReasonMissingToken), "err", err)
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	fp := authz.Fingerprint(raw)
	res, provider, err := s.verifier.Verify(ctx, raw)
	if err != nil {
		d := authz.Deny(err)
		s.log.InfoContext(ctx, "admin call refused", "method", method, "reason", string(d.Reason),
			"provider", provider, "token_sha256", fp, "err", err)
		return nil, status.Errorf(d.Code, "invalid token (%s): %v", d.Reason, err)
	}
	c := &caller{provider: res.Provider, username: res.Username, fingerprint: fp}
	for _, r := range s.require {
		if v, ok := token.Lookup(res.Claims, r.path); ok && r.matches(v) {
			continue
		}
		s.log.InfoContext(ctx, "admin call refused", "method", method, "reason", "required_claim",
			"claim", r.path, c.attrs())
		return nil, status.Errorf(codes.PermissionDenied,
			"the token of user %q (provider %q) does not hold the claim %q that admin.require_claims requires", c.username, c.provider, r.path)
	}
	// A deactivated operator loses the admin API at once too, not when
	// their token expires. A caller who never passed a Check has no record.
	u, err := s.users.User(ctx, res.Provider, res.Username)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, s.storeError(ctx, c, method, err)
	case !u.GetActive():
		s.log.InfoContext(ctx, "admin call refused", "method", method, "reason", string(authz.ReasonUserInactive), c.attrs())
		return nil, status.Errorf(codes.PermissionDenied, "user %q (provider %q) is deactivated", c.username, c.provider)
	}
	return c, nil
}

// bearer returns the one Bearer token of the call's "authorization"
// metadata, read as Check reads the header (authz.ParseBearer). Errors
// never quote the value.
func bearer(ctx context.Context) (string, error) {
	const hint = `send the metadata "authorization: Bearer <JWT>"`
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch {
	case len(vals) == 0:
		return "", errors.New("no bearer token: " + hint)
	case len(vals) > 1:
		return "", fmt.Errorf("%d authorization values: %s once", len(vals), hint)
	}
	tok, err := authz.ParseBearer(vals[0])
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, hint)
	}
	return tok, nil
}

// requirement is one required claim: a dotted path and the scalar value
// the caller's token must hold there.
type requirement struct {
	path string
	want any // string, bool or *big.Rat
}

// compileRequirements flattens the configured claims into sorted dotted
// paths and checks their values.
func compileRequirements(m map[string]any) ([]requirement, error) {
	var reqs []requirement
	var walk func(prefix string, m map[string]any) error
	walk = func(prefix string, m map[string]any) error {
		for k, v := range m {
			path := prefix + k
			if k == "" {
				return fmt.Errorf("admin.require_claims: empty claim name under %q", prefix)
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				if err := walk(path+".", sub); err != nil {
					return err
				}
				continue
			}
			want, ok := scalar(v)
			if !ok {
				return fmt.Errorf("admin.require_claims.%s: want a string, number or boolean, got %s (a list claim matches when it contains the value; name one value per claim)", path, describe(v))
			}
			reqs = append(reqs, requirement{path: path, want: want})
		}
		return nil
	}
	if err := walk("", m); err != nil {
		return nil, err
	}
	slices.SortFunc(reqs, func(a, b requirement) int { return strings.Compare(a.path, b.path) })
	return reqs, nil
}

// matches reports whether the claim value v holds the requirement: equal
// to it, or a list with an element equal to it. Numbers compare by value
// (1 equals 1.0); a number never equals a string.
func (r requirement) matches(v any) bool {
	if list, ok := v.([]any); ok {
		return slices.ContainsFunc(list, r.equal)
	}
	return r.equal(v)
}

func (r requirement) equal(v any) bool {
	got, ok := scalar(v)
	if !ok {
		return false
	}
	switch w := r.want.(type) {
	case *big.Rat:
		g, ok := got.(*big.Rat)
		return ok && g.Cmp(w) == 0
	default:
		return got == r.want
	}
}

// scalar returns v as a comparable value: a string, a bool or a *big.Rat
// for any number, from JSON claims (json.Number) or YAML config (int,
// float64, ...). ok is false for anything else.
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
		return "an empty map"
	}
	return fmt.Sprintf("%T", v)
}
