// Package authz answers Envoy's ext_authz Check: it takes the bearer token,
// verifies it, records the user's login and answers allow with identity
// headers or deny with a JSON body. A decision is always a CheckResponse.
package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/store"
)

// Verifier verifies a raw token; the token.Router is the real one.
type Verifier interface {
	Verify(ctx context.Context, raw string) (res *token.Result, provider string, err error)
	// KeyGeneration is the generation of a provider's current key set; a
	// cached verification is used only while it is unchanged.
	KeyGeneration(provider string) uint64
}

// Users records logins. The bbolt store implements it; another backend can
// be dropped in without touching the Check path.
type Users interface {
	Login(ctx context.Context, l store.Login) (store.Identity, error)
}

// IdentityHeaders names the headers set for the upstream.
type IdentityHeaders struct {
	User        string // the username
	UserID      string // the store's numeric id
	Provider    string // the provider's name
	Payload     string // base64url of the verified claims JSON; "" disables
	StripPrefix string // client headers with this prefix never reach the upstream; "" disables
}

// ClaimHeader sets a header from a claim.
type ClaimHeader struct {
	Header string // lowercase header name
	Claim  string // dotted claim path
}

// Policy is what Checks decide by, built from one config. It is never
// changed once given to a Server; a reload builds a new one and swaps it
// in (Server.SetPolicy), and each Check runs entirely on the policy it
// started with.
type Policy struct {
	Verifier             Verifier
	Headers              IdentityHeaders
	ClaimHeaders         map[string][]ClaimHeader // by provider name
	Providers            []string                 // the provider names, so their shared answer parts are built once
	ForwardAuthorization bool
	// TokenSources are where a token is looked for, in order; the first
	// present is used. Empty means DefaultTokenSources.
	TokenSources []TokenSource
	// CacheMaxEntries bounds the verified-token cache; 0 disables it. Each
	// policy has a cache of its own, so no answer outlives the policy (its
	// providers and keys) that verified it.
	CacheMaxEntries int
}

// Options configure a Server: what does not change with its policy.
type Options struct {
	Users      Users
	Realm      string // www-authenticate realm; default "jwtauthz"
	RetryAfter time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
	Metrics    *Metrics // may be nil
}

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	opts   Options
	policy atomic.Pointer[policy]
}

// policy is a Policy with what is derived from it once.
type policy struct {
	*Policy
	protected map[string]bool // every header name the answers may set or strip
	shared    map[string]providerParts
	cache     *tokenCache // nil when disabled
	sources   []TokenSource
}

// New returns a Server that decides by p.
func New(opts Options, p *Policy) *Server {
	if opts.Realm == "" {
		opts.Realm = "jwtauthz"
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	s.SetPolicy(p)
	return s
}

// SetPolicy makes p the policy of every Check that starts from now on.
func (s *Server) SetPolicy(p *Policy) {
	s.policy.Store(compile(p))
}

func compile(p *Policy) *policy {
	c := &policy{Policy: p, protected: map[string]bool{}, cache: newTokenCache(p.CacheMaxEntries), sources: p.TokenSources}
	if len(c.sources) == 0 {
		c.sources = DefaultTokenSources
	}
	h := p.Headers
	for _, name := range []string{h.User, h.UserID, h.Provider, h.Payload} {
		if name != "" {
			c.protected[name] = true
		}
	}
	for _, chs := range p.ClaimHeaders {
		for _, ch := range chs {
			c.protected[ch.Header] = true
		}
	}
	c.shared = map[string]providerParts{}
	for _, name := range p.Providers {
		c.shared[name] = c.buildProviderParts(name)
	}
	return c
}

// Check answers one ext_authz request. It returns a gRPC error only when the
// request itself is nil; every decision is a CheckResponse.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	resp, provider, reason := s.check(ctx, s.policy.Load(), req)
	if m := s.opts.Metrics; m != nil {
		if provider == "" {
			provider = "none"
		}
		decision := "allow"
		if reason != ReasonOK {
			decision = "deny"
		}
		m.checks.WithLabelValues(provider, decision, string(reason)).Inc()
		m.duration.Observe(time.Since(start).Seconds())
	}
	return resp, nil
}

func (s *Server) check(ctx context.Context, p *policy, req *authv3.CheckRequest) (*authv3.CheckResponse, string, Reason) {
	hdrs, err := headersOf(req)
	if err != nil {
		return s.deny(ctx, req, "", err)
	}
	cred, err := extractToken(p.sources, hdrs, requestPath(req, hdrs))
	if err != nil {
		return s.deny(ctx, req, "", err)
	}
	raw := cred.raw
	v, err := s.verify(ctx, p, raw)
	if err != nil {
		return s.deny(ctx, req, v.provider, withToken(err, raw))
	}
	id, err := s.opts.Users.Login(ctx, store.Login{
		Provider: v.provider,
		Username: v.username,
		Subject:  v.subject,
		Claims:   v.claims,
		At:       s.opts.Now(),
	})
	if err != nil {
		return s.deny(ctx, req, v.provider, withToken(errors.Join(errStore, err), raw))
	}
	if !id.Active {
		return s.deny(ctx, req, v.provider, withToken(errInactive, raw))
	}
	if m := s.opts.Metrics; m != nil && id.New {
		m.usersCreated.Inc()
	}
	if s.opts.Logger.Enabled(ctx, slog.LevelDebug) {
		s.opts.Logger.DebugContext(ctx, "check allowed",
			"provider", v.provider, "user", v.username, "new_user", id.New,
			"request_id", requestID(req), "token_sha256", Fingerprint(raw))
	}
	return p.allow(hdrs, v, id, cred.query), v.provider, ReasonOK
}

// verify returns the token's verification, from the cache when it holds a
// valid one. On failure the result names only the provider, if any.
func (s *Server) verify(ctx context.Context, p *policy, raw string) (*verified, error) {
	var key [32]byte
	if p.cache != nil {
		key = sha256.Sum256([]byte(raw))
		if v := p.cache.get(&key, s.opts.Now(), p.Verifier.KeyGeneration); v != nil {
			s.opts.Metrics.CacheLookup(true)
			return v, nil
		}
		s.opts.Metrics.CacheLookup(false)
	}
	res, provider, err := p.Verifier.Verify(ctx, raw)
	if err != nil {
		return &verified{provider: provider}, err
	}
	v := &verified{
		provider:   res.Provider,
		username:   res.Username,
		subject:    res.Subject,
		validUntil: res.ValidUntil,
		keyGen:     res.KeyGen,
	}
	if p.Headers.Payload != "" {
		v.payload = res.Payload
	}
	for _, ch := range p.ClaimHeaders[res.Provider] {
		if val, ok := claimValue(res.Claims, ch.Claim); ok {
			if v.claims == nil { // most tokens lack some claims: no empty maps in the cache
				v.claims = make(map[string]string, 1)
			}
			v.claims[ch.Claim] = val
		}
	}
	if p.cache != nil {
		p.cache.put(&key, v, s.opts.Now())
	}
	return v, nil
}

// deny answers a failed Check and logs it. provider is the provider the
// token was routed to, if any.
func (s *Server) deny(ctx context.Context, req *authv3.CheckRequest, provider string, err error) (*authv3.CheckResponse, string, Reason) {
	d := Deny(err)
	raw, given := givenToken(err)
	if s.opts.Logger.Enabled(ctx, d.Level) {
		attrs := []any{"reason", string(d.Reason), "request_id", requestID(req), "err", err}
		if provider != "" {
			attrs = append(attrs, "provider", provider)
		}
		if raw != "" {
			attrs = append(attrs, "token_sha256", Fingerprint(raw))
		}
		s.opts.Logger.Log(ctx, d.Level, "check denied", attrs...)
	}
	return s.denied(d, err.Error(), given), provider, d.Reason
}

// Fingerprint names a token in logs without revealing it: the first 12 hex
// digits of its SHA-256.
func Fingerprint(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:6])
}

// requestPath is the request's path with its query: Envoy's
// attributes.request.http.path, or the :path header.
func requestPath(req *authv3.CheckRequest, h requestHeaders) string {
	if p := req.GetAttributes().GetRequest().GetHttp().GetPath(); p != "" {
		return p
	}
	if vals := h.values(":path"); len(vals) == 1 {
		return vals[0]
	}
	return ""
}

func requestID(req *authv3.CheckRequest) string {
	return req.GetAttributes().GetRequest().GetHttp().GetId()
}
