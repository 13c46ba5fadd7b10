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
	"slices"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/jwtauthz/jwtauthz/authz/route"
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
	// Routes decide which rule applies to a request. Nil means every
	// request requires a valid token and nothing more.
	Routes *route.Table
	// CacheMaxEntries bounds the verified-token cache; 0 disables it. Each
	// policy has a cache of its own, so no answer outlives the policy (its
	// providers and keys) that verified it.
	CacheMaxEntries int
	// CacheMaxBytes bounds the cache's estimated memory; 0 means
	// DefaultCacheMaxBytes.
	CacheMaxBytes int
}

// Options configure a Server: what does not change with its policy.
type Options struct {
	Users      Users
	Realm      string // www-authenticate realm; default "jwtauthz"
	RetryAfter time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
	Metrics    *Metrics // may be nil
	// Tracer, when set, makes one span per Check, joined to the trace the
	// request's headers carry (Propagator); nil: no tracing, and no cost.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	opts   Options
	policy atomic.Pointer[policy]
	// realClock: opts.Now is time.Now, so a Check's start is its now too.
	realClock bool
}

// policy is a Policy with what is derived from it once.
type policy struct {
	*Policy
	protected   map[string]bool // every header name the answers may set or strip, "_" read as "-"
	stripPrefix string          // Headers.StripPrefix, "_" read as "-"
	shared      map[string]providerParts
	cache       *tokenCache // nil when disabled
	sources     []TokenSource
	queryNames  []string // the query sources' parameters, removed from every allowed request
	routes      *route.Table
	routeValues map[*route.Rule]*structpb.Value // each rule's name in dynamic metadata
	// What the rules read of a token, kept with its verification:
	// whether any rule asks for scopes, and the claim paths they name.
	needScopes bool
	claimPaths []string
}

// New returns a Server that decides by p.
func New(opts Options, p *Policy) *Server {
	if opts.Realm == "" {
		opts.Realm = "jwtauthz"
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Second
	}
	realClock := opts.Now == nil
	if realClock {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, realClock: realClock}
	s.SetPolicy(p)
	return s
}

// SetPolicy makes p the policy of every Check that starts from now on.
func (s *Server) SetPolicy(p *Policy) {
	s.policy.Store(compile(p))
}

func compile(p *Policy) *policy {
	c := &policy{Policy: p, protected: map[string]bool{}, cache: newTokenCache(p.CacheMaxEntries, p.CacheMaxBytes), sources: p.TokenSources}
	if len(c.sources) == 0 {
		c.sources = DefaultTokenSources
	}
	for _, src := range c.sources {
		if src.Query != "" {
			c.queryNames = append(c.queryNames, src.Query)
		}
	}
	c.routes = p.Routes
	if c.routes == nil {
		c.routes, _ = route.Compile(nil, route.Rule{}) // cannot fail: no conditions
	}
	c.routeValues = map[*route.Rule]*structpb.Value{}
	for _, r := range c.routes.Rules() {
		c.routeValues[r] = structpb.NewStringValue(r.Name)
		c.needScopes = c.needScopes || len(r.Require.Scopes) > 0
		for _, cc := range r.Require.Claims {
			if !slices.Contains(c.claimPaths, cc.Path) {
				c.claimPaths = append(c.claimPaths, cc.Path)
			}
		}
	}
	h := p.Headers
	for _, name := range []string{h.User, h.UserID, h.Provider, h.Payload} {
		if name != "" {
			c.protected[dashed(name)] = true
		}
	}
	for _, chs := range p.ClaimHeaders {
		for _, ch := range chs {
			c.protected[dashed(ch.Header)] = true
		}
	}
	c.stripPrefix = dashed(h.StripPrefix)
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
	c := checkState{req: req, start: start}
	if s.opts.Tracer != nil {
		var span trace.Span
		ctx, span = s.startSpan(ctx, req)
		defer c.endSpan(span)
	}
	resp := s.check(ctx, s.policy.Load(), &c)
	if m := s.opts.Metrics; m != nil {
		m.checkCounter(c.labels()).Inc()
		m.duration.Observe(time.Since(start).Seconds())
	}
	return resp, nil
}

// checkState is what one Check learned on its way, for its answer, its
// log line and its metrics.
type checkState struct {
	req      *authv3.CheckRequest
	start    time.Time // when the Check began, by time.Now
	hdrs     requestHeaders
	rule     *route.Rule // nil until the request is routed
	enforce  bool        // the denial stands even if rule is in dry run
	cred     credential
	v        *verified       // the token, once verified
	id       *store.Identity // its user, once logged in
	decision string          // allow, deny or dry_run_deny
	reason   Reason
}

// labels are jwtauthz_checks_total's: provider, route, decision, reason.
func (c *checkState) labels() checkLabels {
	l := checkLabels{provider: "none", route: "none", decision: c.decision, reason: string(c.reason)}
	if c.v != nil && c.v.provider != "" {
		l.provider = c.v.provider
	}
	if c.rule != nil {
		l.route = c.rule.Name
	}
	return l
}

// check is the Check path: route → token → verify → route conditions →
// user → allow. Each step that fails goes to deny.
func (s *Server) check(ctx context.Context, p *policy, c *checkState) *authv3.CheckResponse {
	var err error
	if c.hdrs, err = headersOf(c.req); err != nil {
		return s.deny(ctx, p, c, err)
	}
	rr := requestAttrs(c.req, c.hdrs)
	if c.rule, err = p.routes.Route(&rr); err != nil {
		// Routed by every way a server might read the request, only to
		// know whether a dry run covers the denial.
		var dryRun bool
		c.rule, dryRun = p.routes.MatchBad(&rr)
		c.enforce = !dryRun
		return s.deny(ctx, p, c, err)
	}
	if c.rule.Auth == route.None {
		return s.allow(ctx, p, c)
	}
	if c.cred, err = extractToken(p.sources, c.hdrs, requestPath(c.req, c.hdrs)); err != nil {
		if c.rule.Auth == route.Optional && errors.Is(err, ErrMissingToken) {
			return s.allow(ctx, p, c)
		}
		return s.deny(ctx, p, c, err)
	}
	now := s.now(c)
	v, err := s.verify(ctx, p, c.cred.raw, now)
	if err != nil {
		c.v = v // only its provider, for the log and the metrics
		return s.deny(ctx, p, c, withToken(err, c.cred.raw))
	}
	c.v = v
	ruleErr := c.rule.Check(v)
	if ruleErr != nil && !c.rule.DryRun {
		return s.deny(ctx, p, c, withToken(ruleErr, c.cred.raw))
	}
	var loginStart time.Time
	if s.opts.Tracer != nil {
		loginStart = time.Now()
	}
	id, err := s.opts.Users.Login(ctx, store.Login{
		Provider: v.provider,
		Username: v.username,
		Subject:  v.subject,
		Claims:   v.claims,
		At:       now,
	})
	if err != nil {
		return s.deny(ctx, p, c, withToken(errors.Join(errStore, err), c.cred.raw))
	}
	if id.New && s.opts.Tracer != nil {
		s.userCreatedSpan(ctx, v.provider, loginStart)
	}
	c.id = &id
	if m := s.opts.Metrics; m != nil && id.New {
		m.usersCreated.Inc()
	}
	if !id.Active {
		return s.deny(ctx, p, c, withToken(errInactive, c.cred.raw))
	}
	if ruleErr != nil {
		return s.deny(ctx, p, c, withToken(ruleErr, c.cred.raw))
	}
	return s.allow(ctx, p, c)
}

// now is the time a Check's token and login are judged at: the injected
// clock's, or, without one, the Check's start (one clock read fewer).
func (s *Server) now(c *checkState) time.Time {
	if s.realClock {
		return c.start
	}
	return s.opts.Now()
}

// allow answers an allowed Check: with the user's identity when the token
// was verified and its user is known, anonymous otherwise.
func (s *Server) allow(ctx context.Context, p *policy, c *checkState) *authv3.CheckResponse {
	c.decision, c.reason = "allow", ReasonOK
	if s.opts.Logger.Enabled(ctx, slog.LevelDebug) {
		attrs := []any{"route", c.rule.Name, "request_id", requestID(c.req)}
		if c.id != nil {
			attrs = append(attrs, "provider", c.v.provider, "user", c.v.username, "new_user", c.id.New, "token_sha256", Fingerprint(c.cred.raw))
		} else {
			attrs = append(attrs, "anonymous", true)
		}
		s.opts.Logger.DebugContext(ctx, "check allowed", attrs...)
	}
	return p.allow(c, "")
}

// verify returns the token's verification, from the cache when it holds a
// valid one. On failure the result names only the provider, if any.
func (s *Server) verify(ctx context.Context, p *policy, raw string, now time.Time) (*verified, error) {
	var key [32]byte
	if p.cache != nil {
		key = sha256.Sum256([]byte(raw))
		if v := p.cache.get(&key, now, p.Verifier.KeyGeneration); v != nil {
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
	if p.needScopes || len(p.claimPaths) > 0 {
		v.rules = &ruleFacts{}
	}
	if p.needScopes {
		v.rules.scopes = route.ParseScopes(res.Claims["scope"], res.Claims["scp"])
	}
	for _, path := range p.claimPaths {
		if val, ok := token.Lookup(res.Claims, path); ok {
			if v.rules.claims == nil {
				v.rules.claims = make(map[string]any, len(p.claimPaths))
			}
			v.rules.claims[path] = val
		}
	}
	if p.cache != nil {
		p.cache.put(&key, v, now)
	}
	return v, nil
}

// deny answers a failed Check and logs it: a denial, or, on a route in
// dry run, an allow that says what would have been denied.
func (s *Server) deny(ctx context.Context, p *policy, c *checkState, err error) *authv3.CheckResponse {
	d := Deny(err)
	c.decision, c.reason = "deny", d.Reason
	dryRun := c.rule != nil && c.rule.DryRun && !c.enforce
	level, msg := d.Level, "check denied"
	if dryRun {
		c.decision = "dry_run_deny"
		level, msg = slog.LevelInfo, "check allowed in dry run"
	}
	raw, given := givenToken(err)
	if s.opts.Logger.Enabled(ctx, level) {
		attrs := []any{"reason", string(d.Reason), "decision", c.decision, "request_id", requestID(c.req), "err", err}
		if c.rule != nil {
			attrs = append(attrs, "route", c.rule.Name)
		}
		if c.v != nil && c.v.provider != "" {
			attrs = append(attrs, "provider", c.v.provider)
		}
		if raw != "" {
			attrs = append(attrs, "token_sha256", Fingerprint(raw))
		}
		s.opts.Logger.Log(ctx, level, msg, attrs...)
	}
	if dryRun {
		return p.allow(c, d.Reason)
	}
	resp := s.denied(d, err, given)
	if c.rule != nil { // for access logs, as on allows
		resp.DynamicMetadata = &structpb.Struct{Fields: map[string]*structpb.Value{"route": p.routeValues[c.rule]}}
	}
	return resp
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

// requestAttrs is what routes match on: the host (attributes or
// :authority), the method, the path without its query, and the
// context_extensions of Envoy's per-route ExtAuthzPerRoute.
func requestAttrs(req *authv3.CheckRequest, h requestHeaders) route.Request {
	http := req.GetAttributes().GetRequest().GetHttp()
	r := route.Request{
		Host:              http.GetHost(),
		Method:            http.GetMethod(),
		ContextExtensions: req.GetAttributes().GetContextExtensions(),
	}
	if r.Host == "" {
		r.Host = firstValue(h, ":authority")
	}
	if r.Method == "" {
		r.Method = firstValue(h, ":method")
	}
	r.Path, _, _ = strings.Cut(requestPath(req, h), "?")
	return r
}

// dashed reads "_" as "-" in a header name.
func dashed(name string) string { return strings.ReplaceAll(name, "_", "-") }

func firstValue(h requestHeaders, name string) string {
	if vals := h.values(name); len(vals) > 0 {
		return vals[0]
	}
	return ""
}

func requestID(req *authv3.CheckRequest) string {
	return req.GetAttributes().GetRequest().GetHttp().GetId()
}
