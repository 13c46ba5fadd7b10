// Package admin serves jwtauthz's UserAdmin gRPC API over the user store:
// list the users jwtauthz created from verified tokens, look one up, and
// deactivate or reactivate one.
//
// Every call is authenticated with a bearer JWT in the "authorization"
// metadata, verified by the same providers, keys and claims schema as the
// Check path, and must hold the configured required claims.
package admin

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jwtauthz/jwtauthz/authz/route"
	"github.com/jwtauthz/jwtauthz/authz/token"
	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
)

// Page sizes of ListUsers.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// Users is the part of the user store the admin API needs. The bbolt store
// implements it. Errors wrap store.ErrNotFound when there is no such user.
type Users interface {
	List(ctx context.Context, provider string, afterID uint64, limit int) ([]*adminv1.User, error)
	User(ctx context.Context, provider, username string) (*adminv1.User, error)
	SetActive(ctx context.Context, provider, username string, active bool) (*adminv1.User, error)
}

// Verifier verifies a caller's raw token. The token.Router does, and so
// does any authz.Verifier: pass the Check path's, so that the same
// providers, keys and claims schema apply.
type Verifier interface {
	Verify(ctx context.Context, raw string) (res *token.Result, provider string, err error)
}

// Options configure a Server.
type Options struct {
	Users    Users
	Verifier Verifier
	Policy
	Logger *slog.Logger
}

// Policy is who may call: it changes with a reload (Server.SetPolicy).
type Policy struct {
	Verifier Verifier
	// RequireClaims maps a dotted claim path to the value the caller's token
	// must hold there: an equal value, or a list claim that contains it.
	// Values are strings, numbers or booleans; a nested map is read as
	// nested paths ({realm_access: {roles: admin}} is realm_access.roles).
	// Empty means any verified token may call.
	RequireClaims map[string]any
	// Providers, when set, are the only providers whose tokens may call.
	Providers []string
}

// policy is a Policy compiled.
type policy struct {
	verifier  Verifier
	require   []route.ClaimCondition
	providers []string
}

// Server implements adminv1.UserAdminServer. Each method authenticates its
// caller before it touches the store.
type Server struct {
	adminv1.UnimplementedUserAdminServer
	users  Users
	policy atomic.Pointer[policy]
	log    *slog.Logger
}

// New returns a Server. It fails when a required claim's value is not a
// string, number or boolean; the error names the claim path.
func New(opts Options) (*Server, error) {
	if opts.Users == nil {
		return nil, errors.New("admin: Users is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{users: opts.Users, log: opts.Logger}
	if err := s.SetPolicy(opts.Policy); err != nil {
		return nil, err
	}
	return s, nil
}

// SetPolicy makes p the policy of every call from now on. It fails, and
// changes nothing, when a required claim's value is not a string, number
// or boolean; the error names the claim path.
func (s *Server) SetPolicy(p Policy) error {
	if p.Verifier == nil {
		return errors.New("admin: a Verifier is required")
	}
	reqs, err := compileRequirements(p.RequireClaims)
	if err != nil {
		return err
	}
	s.policy.Store(&policy{verifier: p.Verifier, require: reqs, providers: p.Providers})
	return nil
}

// ListUsers returns one page of users ordered by id. Paging goes by id, and
// ids only grow, so a listing neither skips nor repeats a user while new
// users are created; users created after the listing passed their place
// appear on a later page.
func (s *Server) ListUsers(ctx context.Context, req *adminv1.ListUsersRequest) (*adminv1.ListUsersResponse, error) {
	c, err := s.authorize(ctx, "ListUsers")
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, status.Errorf(codes.InvalidArgument, "page_size must not be negative, got %d", size)
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	var after uint64
	if t := req.GetPageToken(); t != "" {
		if after, err = decodePageToken(t, req.GetProvider()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	// One more than the page tells whether a next page exists, so the last
	// page has no next_page_token.
	users, err := s.users.List(ctx, req.GetProvider(), after, size+1)
	if err != nil {
		return nil, s.storeError(ctx, c, "ListUsers", err)
	}
	resp := &adminv1.ListUsersResponse{Users: users}
	if len(users) > size {
		resp.Users = users[:size]
		resp.NextPageToken = encodePageToken(req.GetProvider(), users[size-1].GetId())
	}
	s.log.DebugContext(ctx, "admin call", "method", "ListUsers", "filter_provider", req.GetProvider(),
		"users", len(resp.Users), c.attrs())
	return resp, nil
}

// GetUser returns one user.
func (s *Server) GetUser(ctx context.Context, req *adminv1.GetUserRequest) (*adminv1.User, error) {
	c, err := s.authorize(ctx, "GetUser")
	if err != nil {
		return nil, err
	}
	if err := checkKey(req.GetProvider(), req.GetUsername()); err != nil {
		return nil, err
	}
	u, err := s.users.User(ctx, req.GetProvider(), req.GetUsername())
	if err != nil {
		return nil, s.storeError(ctx, c, "GetUser", err)
	}
	s.log.DebugContext(ctx, "admin call", "method", "GetUser",
		"provider", req.GetProvider(), "user", req.GetUsername(), c.attrs())
	return u, nil
}

// SetUserActive deactivates or reactivates a user. The store applies the
// change before it returns, so the user's next Check sees it.
func (s *Server) SetUserActive(ctx context.Context, req *adminv1.SetUserActiveRequest) (*adminv1.User, error) {
	c, err := s.authorize(ctx, "SetUserActive")
	if err != nil {
		return nil, err
	}
	if err := checkKey(req.GetProvider(), req.GetUsername()); err != nil {
		return nil, err
	}
	u, err := s.users.SetActive(ctx, req.GetProvider(), req.GetUsername(), req.GetActive())
	if err != nil {
		return nil, s.storeError(ctx, c, "SetUserActive", err)
	}
	msg := "user deactivated"
	if req.GetActive() {
		msg = "user activated"
	}
	// An audit record: who changed whom.
	s.log.InfoContext(ctx, msg, "provider", req.GetProvider(), "user", req.GetUsername(),
		"user_id", u.GetId(), c.attrs())
	return u, nil
}

func checkKey(provider, username string) error {
	switch {
	case provider == "":
		return status.Error(codes.InvalidArgument, "provider is required")
	case username == "":
		return status.Error(codes.InvalidArgument, "username is required")
	}
	return nil
}

// storeError turns a store failure into a gRPC status.
func (s *Server) storeError(ctx context.Context, c *caller, method string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	s.log.WarnContext(ctx, "admin call failed", "method", method, "err", err, c.attrs())
	return status.Errorf(codes.Unavailable, "user store: %v", err)
}

// pageTokenVersion is the first byte of every page token, so that their
// format can change without misreading old ones.
const pageTokenVersion = 1

// encodePageToken returns the token of the page after lastID, bound to the
// provider filter of the listing it belongs to.
func encodePageToken(provider string, lastID uint64) string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(provider))
	b = append(b, pageTokenVersion)
	b = binary.AppendUvarint(b, lastID)
	b = append(b, provider...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePageToken returns the last id a page token stands for. A token of
// a listing with another provider filter is refused: continuing it would
// silently list other users than the caller asked for.
func decodePageToken(tok, provider string) (uint64, error) {
	const bad = "page_token is not one this server issued; start over without it"
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 2 || b[0] != pageTokenVersion {
		return 0, errors.New(bad)
	}
	id, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return 0, errors.New(bad)
	}
	if p := string(b[1+n:]); p != provider {
		return 0, fmt.Errorf("page_token belongs to a listing with provider filter %q, not %q; repeat that filter or start over without page_token", p, provider)
	}
	return id, nil
}
