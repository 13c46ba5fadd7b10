// Package token verifies a provider's JWTs: structure, algorithm allowlist,
// crit, time claims, issuer and audience first — cheap checks that need no
// key, so a malformed or expired token never triggers a key refresh — then
// the signature with the provider's keys, then the claims schema.
package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/text/unicode/norm"

	"github.com/jwtauthz/jwtauthz/authz/keys"
)

// MaxSize is the largest token accepted; larger ones are refused unparsed.
const MaxSize = 8 << 10

// MaxUsername bounds a username: it becomes a header value and a store key.
const MaxUsername = 256

// Errors a verification can end with. Each wraps more detail; the caller
// classifies with errors.Is. Key source errors (keys.ErrUnknownKID,
// keys.ErrUnavailable) and schema errors pass through unchanged.
var (
	ErrMalformed   = errors.New("malformed token")
	ErrAlgorithm   = errors.New("algorithm not allowed")
	ErrExpired     = errors.New("token expired")
	ErrNotYetValid = errors.New("token not yet valid")
	ErrIssuer      = errors.New("issuer not accepted")
	ErrAudience    = errors.New("audience not accepted")
	ErrSignature   = errors.New("invalid signature")
	// ErrClaims is a claims failure found outside the schema, worded like
	// a schema failure: the claims are not UTF-8, or the username claim is
	// absent or not a username (see Verifier.username).
	ErrClaims = errors.New("Invalid JWT schema") //nolint:staticcheck // the product's own wording
)

// KeySource finds the keys that may verify a token.
type KeySource interface {
	Lookup(ctx context.Context, dst []keys.Key, kid, alg string) ([]keys.Key, uint64, error)
	// Current returns the key set now in force, or nil when none is loaded.
	Current() *keys.Set
}

// ClaimsValidator checks verified claims, e.g. against a JSON Schema.
type ClaimsValidator interface {
	Validate(claims map[string]any) error
}

// Options configure one provider's Verifier.
type Options struct {
	Provider      string
	Issuer        string   // when set, iss must equal it
	Audiences     []string // when set, aud must contain one of them
	Algorithms    []string // the allowlist; never "none"
	Leeway        time.Duration
	UsernameClaim string // default "username"
	Keys          KeySource
	Schema        ClaimsValidator // may be nil
	Now           func() time.Time
}

// Verifier verifies tokens for one provider.
type Verifier struct {
	opts      Options
	validator *jwt.Validator
}

// NewVerifier returns a Verifier for opts.
func NewVerifier(opts Options) *Verifier {
	if opts.UsernameClaim == "" {
		opts.UsernameClaim = "username"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	vopts := []jwt.ParserOption{
		jwt.WithLeeway(opts.Leeway),
		jwt.WithTimeFunc(opts.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if opts.Issuer != "" {
		vopts = append(vopts, jwt.WithIssuer(opts.Issuer))
	}
	if len(opts.Audiences) > 0 {
		vopts = append(vopts, jwt.WithAudience(opts.Audiences...))
	}
	return &Verifier{
		opts:      opts,
		validator: jwt.NewValidator(vopts...),
	}
}

// Provider returns the provider's name.
func (v *Verifier) Provider() string { return v.opts.Provider }

// Result is a verified token.
type Result struct {
	Provider string
	Username string
	Subject  string
	Claims   map[string]any // plain JSON values, numbers as json.Number
	Payload  string         // the token's payload segment: base64url of the claims JSON
	Expiry   time.Time
	// ValidUntil is Expiry plus the provider's leeway: the verifier accepts
	// the token at any time strictly before it (and no later).
	ValidUntil time.Time
	KID        string
	KeyGen     uint64 // generation of the key set that verified it
}

// parsed is a token decoded but not yet verified.
type parsed struct {
	header  map[string]any
	claims  jwt.MapClaims
	method  jwt.SigningMethod // nil when alg is not a string golang-jwt knows
	signing string            // header.payload, what the signature signs
	payload string            // the payload segment
	sig     []byte
	alg     string
	kid     string
}

// segments is the base64url encoding of JWS compact segments: no padding,
// and no stray bits in the last character (golang-jwt's strict decoding).
var segments = base64.RawURLEncoding.Strict()

// parse decodes raw without verifying anything: each segment is decoded
// once, and the header and payload are read in one JSON pass that also
// finds repeated member names. It refuses tokens over MaxSize before
// looking at them, and judges everything else in the order golang-jwt's
// ParseUnverified and the duplicate check did before it.
func parse(raw string) (*parsed, error) {
	if len(raw) > MaxSize {
		return nil, fmt.Errorf("%w: token is %d bytes, over the %d-byte limit", ErrMalformed, len(raw), MaxSize)
	}
	if n := strings.Count(raw, "."); n != 2 {
		return nil, fmt.Errorf("%w: a JWS compact token has 3 segments, got %d", ErrMalformed, n+1)
	}
	i := strings.IndexByte(raw, '.')
	j := i + 1 + strings.IndexByte(raw[i+1:], '.')
	src := []byte(raw)
	// One buffer for the three decoded segments.
	buf := make([]byte, segments.DecodedLen(len(raw)))
	decode := func(start, end int) ([]byte, error) {
		n, err := segments.Decode(buf, src[start:end])
		out := buf[:n:n]
		buf = buf[n:]
		return out, err
	}
	malformed := func(what string, err error) error {
		return fmt.Errorf("%w: %w: %s: %w", ErrMalformed, jwt.ErrTokenMalformed, what, err)
	}

	hb, err := decode(0, i)
	if err != nil {
		return nil, malformed("could not base64 decode header", err)
	}
	header, hdup, hasHdup, err := decodeHeader(hb)
	if err != nil {
		return nil, malformed("could not JSON decode header", err)
	}
	pb, err := decode(i+1, j)
	if err != nil {
		return nil, malformed("could not base64 decode claim", err)
	}
	claims, end, pdup, hasPdup, err := decodeClaims(pb)
	if err != nil {
		return nil, malformed("could not JSON decode claim", err)
	}
	pt := &parsed{header: header, claims: claims, signing: raw[:j], payload: raw[i+1 : j]}
	// golang-jwt decodes the signature only under an alg it knows; an
	// unknown alg is judged by the provider's allowlist.
	if alg, ok := header["alg"].(string); ok {
		pt.alg = alg
		if pt.method = jwt.GetSigningMethod(alg); pt.method != nil {
			if pt.sig, err = decode(j+1, len(raw)); err != nil {
				return nil, malformed("could not base64 decode signature", err)
			}
		}
	}
	if header == nil {
		return nil, fmt.Errorf("%w: no header", ErrMalformed)
	}
	// encoding/json reads each invalid byte as U+FFFD, so two distinct
	// usernames could become one user: refuse what is not UTF-8 (a payload
	// that is not is a claims failure). RFC 7519 §4 allows a parser to keep
	// the last of repeated names, as encoding/json does; jwtauthz refuses
	// them instead, since two verifiers of one token could read different
	// claims. Data after the payload's JSON text is refused too: the
	// decoder ignores it, an upstream reading a forwarded payload might not.
	switch {
	case !utf8.Valid(hb):
		return nil, fmt.Errorf("%w: header: not valid UTF-8", ErrMalformed)
	case hasHdup:
		return nil, fmt.Errorf("%w: header repeats the member %.64q", ErrMalformed, hdup)
	case !utf8.Valid(pb):
		return nil, fmt.Errorf("%w: claims: not valid UTF-8 (RFC 8259 §8.1)", ErrClaims)
	case hasPdup:
		return nil, fmt.Errorf("%w: payload repeats the member %.64q", ErrMalformed, pdup)
	case !onlySpace(pb[end:]):
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, errTrailing)
	}
	if k, ok := header["kid"]; ok {
		kid, isString := k.(string)
		if !isString {
			return nil, fmt.Errorf("%w: kid header is not a string", ErrMalformed)
		}
		pt.kid = kid
	}
	return pt, nil
}

// Verify verifies a raw compact JWT.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Result, error) {
	pt, err := parse(raw)
	if err != nil {
		return nil, err
	}
	return v.verify(ctx, pt)
}

func (v *Verifier) verify(ctx context.Context, pt *parsed) (*Result, error) {
	if !slices.Contains(v.opts.Algorithms, pt.alg) || pt.method == nil {
		return nil, fmt.Errorf("%w: alg %.32q is not in the allowlist %v", ErrAlgorithm, pt.alg, v.opts.Algorithms)
	}
	if crit, ok := pt.header["crit"]; ok {
		// RFC 7515 §4.1.11: we understand no extension, so any crit refuses.
		return nil, fmt.Errorf("%w: crit header %.64v names extensions this verifier does not understand", ErrMalformed, crit)
	}
	if err := checkRegisteredClaims(pt.claims); err != nil {
		return nil, err
	}
	if err := v.validator.Validate(pt.claims); err != nil {
		return nil, v.classifyClaims(pt.claims, err)
	}
	var buf [keys.MaxCandidates]keys.Key
	cands, gen, err := v.opts.Keys.Lookup(ctx, buf[:0], pt.kid, pt.alg)
	if err != nil {
		return nil, fmt.Errorf("kid %.64q, alg %s: %w", pt.kid, pt.alg, err)
	}
	if !verifyAny(pt.method, pt.signing, pt.sig, cands) {
		return nil, fmt.Errorf("%w: no key of provider %q verifies it", ErrSignature, v.opts.Provider)
	}

	plain := map[string]any(pt.claims)
	if v.opts.Schema != nil {
		if err := v.opts.Schema.Validate(plain); err != nil {
			return nil, err
		}
	}
	username, err := v.username(pt.claims)
	if err != nil {
		return nil, err
	}
	exp, _ := pt.claims.GetExpirationTime()
	sub, _ := pt.claims["sub"].(string)
	return &Result{
		Provider:   v.opts.Provider,
		Username:   username,
		Subject:    sub,
		Claims:     plain,
		Payload:    pt.payload,
		Expiry:     exp.Time,
		ValidUntil: exp.Time.Add(v.opts.Leeway),
		KID:        pt.kid,
		KeyGen:     gen,
	}, nil
}

func (v *Verifier) username(c jwt.MapClaims) (string, error) {
	claim := v.opts.UsernameClaim
	u, ok := Lookup(c, claim)
	if !ok {
		return "", fmt.Errorf("%w: %s: missing property (username_claim)", ErrClaims, claim)
	}
	s, ok := u.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("%w: %s: want a non-empty string (username_claim)", ErrClaims, claim)
	}
	if err := checkUsername(s); err != nil {
		return "", fmt.Errorf("%w: %s: %v (username_claim)", ErrClaims, claim, err)
	}
	return s, nil
}

// checkUsername refuses what would make one person two users, or two
// people one: a username becomes a store key and a header value, and HTTP
// trims header values, so "alice " would be a new user whom the upstream
// sees as alice. It must be at most MaxUsername bytes of UTF-8 in Unicode
// NFC, with no control character and no white space at either end.
func checkUsername(s string) error {
	if len(s) > MaxUsername {
		return fmt.Errorf("%d bytes, over the limit of %d", len(s), MaxUsername)
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U is not allowed in a username", r)
		}
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return errors.New("white space at its start or end is not allowed in a username")
	}
	if !norm.NFC.IsNormalString(s) {
		return errors.New("not in Unicode NFC (compose it, as an identity provider should)")
	}
	return nil
}

func verifyAny(m jwt.SigningMethod, signing string, sig []byte, cands []keys.Key) bool {
	for _, k := range cands {
		if h, pub, ok := fastRSA(m, k.Public); ok {
			if verifyPKCS1v15(pub, h, signing, sig) {
				return true
			}
			continue
		}
		if m.Verify(signing, sig, k.Public) == nil {
			return true
		}
	}
	return false
}

// maxNumericDate is 10000-01-01T00:00:00Z: later dates are no real token's.
const maxNumericDate = 253402300800

// checkRegisteredClaims refuses registered claims of the wrong type (iss and
// sub not strings, aud neither a string nor a list of strings: golang-jwt
// reads a wrong type as absent) and exp, nbf and iat outside [0, year
// 10000): golang-jwt converts a NumericDate through float64 to int64, and
// values past int64's range wrap to the distant past, so an nbf of 1e300
// would pass.
func checkRegisteredClaims(c jwt.MapClaims) error {
	for _, name := range []string{"iss", "sub"} {
		if v, ok := c[name]; ok {
			if _, isString := v.(string); !isString {
				return fmt.Errorf("%w: %s is not a string", ErrMalformed, name)
			}
		}
	}
	if v, ok := c["aud"]; ok {
		switch a := v.(type) {
		case string:
		case []any:
			for _, e := range a {
				if _, isString := e.(string); !isString {
					return fmt.Errorf("%w: aud holds a member that is not a string", ErrMalformed)
				}
			}
		default:
			return fmt.Errorf("%w: aud is neither a string nor a list of strings", ErrMalformed)
		}
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		v, ok := c[name]
		if !ok {
			continue
		}
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%w: %s is not a number", ErrMalformed, name)
		}
		f, err := n.Float64()
		if err != nil || math.IsNaN(f) || f < 0 || f >= maxNumericDate {
			return fmt.Errorf("%w: %s %.32s is out of range (0 to year 10000)", ErrMalformed, name, n)
		}
	}
	return nil
}

// classifyClaims maps golang-jwt's claim errors onto ours, with details
// that say when.
func (v *Verifier) classifyClaims(c jwt.MapClaims, err error) error {
	at := func(get func() (*jwt.NumericDate, error)) string {
		d, gerr := get()
		if gerr != nil || d == nil {
			return "?"
		}
		return d.UTC().Format(time.RFC3339)
	}
	leeway := fmt.Sprintf("now %s, leeway %v", v.opts.Now().UTC().Format(time.RFC3339), v.opts.Leeway)
	switch {
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && strings.Contains(err.Error(), "exp"):
		return fmt.Errorf("%w: the exp claim is required", ErrMalformed)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w at %s (%s)", ErrExpired, at(c.GetExpirationTime), leeway)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fmt.Errorf("%w: nbf is %s (%s)", ErrNotYetValid, at(c.GetNotBefore), leeway)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fmt.Errorf("%w: iat %s is in the future (%s)", ErrNotYetValid, at(c.GetIssuedAt), leeway)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fmt.Errorf("%w: want %q", ErrIssuer, v.opts.Issuer)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Errorf("%w: want one of %q", ErrAudience, v.opts.Audiences)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// A missing iss or aud when one is configured.
		if strings.Contains(err.Error(), "aud") {
			return fmt.Errorf("%w: the aud claim is required, want one of %q", ErrAudience, v.opts.Audiences)
		}
		return fmt.Errorf("%w: the iss claim is required, want %q", ErrIssuer, v.opts.Issuer)
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// Lookup returns the claim at a dotted path through nested objects, e.g.
// "realm_access.roles". A name that itself holds dots is written in
// brackets: "[https://example.com/roles]" is the top-level claim of that
// name (Auth0's namespaced claims). Without brackets a dot always
// descends: a top-level claim named "realm_access.roles" is never read for
// the path realm_access.roles, so a token cannot offer a value its nested
// claim does not have.
func Lookup(claims map[string]any, path string) (any, bool) {
	var cur any = claims
	for path != "" {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		var name string
		if name, path, ok = nextSegment(path); !ok {
			return nil, false
		}
		if cur, ok = m[name]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// nextSegment splits the first name off a claim path: up to the next dot,
// or a bracketed name and the dot after it.
func nextSegment(path string) (name, rest string, ok bool) {
	if strings.HasPrefix(path, "[") {
		end := strings.IndexByte(path, ']')
		if end < 0 {
			return "", "", false
		}
		name, rest = path[1:end], path[end+1:]
		if rest != "" {
			if rest[0] != '.' {
				return "", "", false
			}
			rest = rest[1:]
			if rest == "" {
				return "", "", false
			}
		}
		return name, rest, name != ""
	}
	name, rest, more := strings.Cut(path, ".")
	if name == "" || more && rest == "" {
		return "", "", false
	}
	return name, rest, true
}

// ValidPath reports whether path is a claim path Lookup reads: names
// separated by dots, each non-empty, a name with dots in brackets.
func ValidPath(path string) bool {
	if path == "" {
		return false
	}
	for path != "" {
		var ok bool
		if _, path, ok = nextSegment(path); !ok {
			return false
		}
	}
	return true
}

// Router sends each token to the provider whose issuer equals the token's
// (unverified) iss, or to the one provider without an issuer.
type Router struct {
	byName   map[string]*Verifier
	byIssuer map[string]*Verifier
	fallback *Verifier
}

// NewRouter returns a router over vs. At most one verifier may have no issuer.
func NewRouter(vs []*Verifier) (*Router, error) {
	r := &Router{byName: make(map[string]*Verifier), byIssuer: make(map[string]*Verifier)}
	for _, v := range vs {
		r.byName[v.opts.Provider] = v
		if v.opts.Issuer == "" {
			if r.fallback != nil {
				return nil, fmt.Errorf("providers %q and %q both have no issuer: tokens could not be routed", r.fallback.opts.Provider, v.opts.Provider)
			}
			r.fallback = v
			continue
		}
		if prev, dup := r.byIssuer[v.opts.Issuer]; dup {
			return nil, fmt.Errorf("providers %q and %q have the same issuer %q", prev.opts.Provider, v.opts.Provider, v.opts.Issuer)
		}
		r.byIssuer[v.opts.Issuer] = v
	}
	return r, nil
}

// Verify routes and verifies raw. On failure, provider names the provider
// the token was routed to ("" when none).
func (r *Router) Verify(ctx context.Context, raw string) (res *Result, provider string, err error) {
	pt, err := parse(raw)
	if err != nil {
		return nil, "", err
	}
	v := r.fallback
	if iss, ok := pt.claims["iss"].(string); ok {
		if byIss, ok := r.byIssuer[iss]; ok {
			v = byIss
		}
	}
	if v == nil {
		iss, _ := pt.claims["iss"].(string)
		return nil, "", fmt.Errorf("%w: no provider has issuer %.128q", ErrIssuer, iss)
	}
	res, err = v.verify(ctx, pt)
	return res, v.opts.Provider, err
}

// KeyGeneration returns the generation of provider's current key set, or 0
// when the provider is unknown or has no keys. A verified token stays valid
// for a cache only while the generation that verified it is current.
func (r *Router) KeyGeneration(provider string) uint64 {
	v := r.byName[provider]
	if v == nil {
		return 0
	}
	set := v.opts.Keys.Current()
	if set == nil {
		return 0
	}
	return set.Generation
}
