package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/route"
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
	p := s.policy.Load()
	res, provider, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		d := authz.Deny(err)
		s.log.InfoContext(ctx, "admin call refused", "method", method, "reason", string(d.Reason),
			"provider", provider, "token_sha256", fp, "err", err)
		return nil, status.Errorf(d.Code, "invalid token (%s): %v", d.Reason, err)
	}
	c := &caller{provider: res.Provider, username: res.Username, fingerprint: fp}
	if len(p.providers) > 0 && !slices.Contains(p.providers, res.Provider) {
		s.log.InfoContext(ctx, "admin call refused", "method", method, "reason", "provider", c.attrs())
		return nil, status.Errorf(codes.PermissionDenied,
			"tokens of provider %q may not call the admin API (admin.providers: %q)", c.provider, p.providers)
	}
	for _, r := range p.require {
		if v, ok := token.Lookup(res.Claims, r.Path); ok && r.Holds(v) {
			continue
		}
		s.log.InfoContext(ctx, "admin call refused", "method", method, "reason", "required_claim",
			"claim", r.Path, c.attrs())
		return nil, status.Errorf(codes.PermissionDenied,
			"the token of user %q (provider %q) does not hold the claim %q that admin.require_claims requires", c.username, c.provider, r.Path)
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

// compileRequirements flattens the configured claims into conditions on
// sorted dotted paths, one value each: the caller's claim must equal it or
// be a list that contains it.
func compileRequirements(m map[string]any) ([]route.ClaimCondition, error) {
	var reqs []route.ClaimCondition
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
			if _, isList := v.([]any); isList {
				return fmt.Errorf("admin.require_claims.%s: want a string, number or boolean, got a list (a list claim matches when it contains the value; name one value per claim)", path)
			}
			c := route.ClaimCondition{Path: path, Accept: []any{v}}
			if err := c.Compile(); err != nil {
				return fmt.Errorf("admin.require_claims.%s: want a string, number or boolean (%v)", path, err)
			}
			reqs = append(reqs, c)
		}
		return nil
	}
	if err := walk("", m); err != nil {
		return nil, err
	}
	slices.SortFunc(reqs, func(a, b route.ClaimCondition) int { return strings.Compare(a.Path, b.Path) })
	return reqs, nil
}

// ValidateRequireClaims checks admin.require_claims as SetPolicy would;
// the error names the claim path.
func ValidateRequireClaims(m map[string]any) error {
	_, err := compileRequirements(m)
	return err
}
