package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/jwtauthz/jwtauthz/authz/route"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/store"
)

// wrapFalse is shared by every header option: messages are never mutated
// once built, and marshaling only reads them.
var wrapFalse = wrapperspb.Bool(false)

// setHeader builds a header that replaces any value the request had. The
// deprecated append=false is set too: older Envoys read only that field.
func setHeader(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		Append:       wrapFalse,
	}
}

// allowParts are the messages of one allow answer, allocated together: one
// allocation instead of a dozen or so. They are never mutated once built,
// and gRPC marshaling only reads them.
type allowParts struct {
	resp                 authv3.CheckResponse
	oneof                authv3.CheckResponse_OkResponse
	ok                   authv3.OkHttpResponse
	meta                 structpb.Struct
	user, userID         structpb.Value
	userValue, userIDVal structpb.Value_StringValue
	set                  [6]*corev3.HeaderValueOption
	opts                 [4]corev3.HeaderValueOption // the headers this answer sets, as far as they go
	vals                 [4]corev3.HeaderValue
	n                    int // opts and vals used
}

// header is setHeader, in a's own storage while it lasts.
func (a *allowParts) header(name, value string) *corev3.HeaderValueOption {
	if a.n == len(a.opts) {
		return setHeader(name, value)
	}
	h, v := &a.opts[a.n], &a.vals[a.n]
	a.n++
	v.Key, v.Value = name, value
	h.Header, h.AppendAction, h.Append = v, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, wrapFalse
	return h
}

// allow builds the answer that lets c's request through: as its user when
// the token was verified and the user is known, else anonymous. Either way
// client-sent identity headers are stripped. dryRun, when set, is the
// reason a route in dry run would have denied the request.
func (p *policy) allow(c *checkState, dryRun Reason) *authv3.CheckResponse {
	a := new(allowParts)
	meta := make(map[string]*structpb.Value, 6)
	meta["route"] = p.routeValues[c.rule]
	var set []*corev3.HeaderValueOption
	if c.id != nil {
		set = p.identity(a, c.v, c.id, meta)
	} else {
		meta["anonymous"] = valueTrue
	}
	if dryRun != "" {
		meta["dry_run_deny"] = structpb.NewStringValue(string(dryRun))
	}

	var remove []string
	c.hdrs.each(func(name string) {
		if !p.strips(name) || isSet(set, name) || slices.Contains(remove, name) {
			return
		}
		remove = append(remove, name)
	})
	if !p.ForwardAuthorization {
		remove = append(remove, "authorization")
	}
	a.ok.Headers, a.ok.HeadersToRemove = set, remove
	if len(p.queryNames) > 0 {
		a.ok.QueryParametersToRemove = queryParamsToRemove(p.queryNames, requestPath(c.req, c.hdrs))
	}
	a.oneof.OkResponse = &a.ok
	a.meta.Fields = meta
	a.resp.Status = statusOK
	a.resp.HttpResponse = &a.oneof
	a.resp.DynamicMetadata = &a.meta // for access logs and later filters
	return &a.resp
}

// identity returns the identity and claim headers of v's user id, built in
// a, and adds the user to the dynamic metadata meta.
func (p *policy) identity(a *allowParts, v *verified, id *store.Identity, meta map[string]*structpb.Value) []*corev3.HeaderValueOption {
	h := p.Headers
	shared := p.providerParts(v.provider)
	chs := p.ClaimHeaders[v.provider]
	userID := strconv.FormatUint(id.ID, 10)
	set := a.set[:0]
	if h.User != "" {
		set = append(set, a.header(h.User, v.username))
	}
	if h.UserID != "" {
		set = append(set, a.header(h.UserID, userID))
	}
	if shared.header != nil {
		set = append(set, shared.header)
	}
	if h.Payload != "" {
		set = append(set, a.header(h.Payload, v.payload))
	}
	for _, ch := range chs {
		if val, ok := v.claims[ch.Claim]; ok {
			set = append(set, a.header(ch.Header, val))
		}
	}
	newUser := valueFalse
	if id.New {
		newUser = valueTrue
	}
	a.userValue.StringValue, a.userIDVal.StringValue = v.username, userID
	a.user.Kind, a.userID.Kind = &a.userValue, &a.userIDVal
	meta["user"] = &a.user
	meta["user_id"] = &a.userID
	meta["provider"] = shared.value
	meta["new_user"] = newUser
	return set
}

// Parts of allow answers that are the same for many answers, built once and
// shared: they are never mutated, and gRPC marshaling only reads them.
// (Per-token copies would cost over a kilobyte per cached token.)
var (
	statusOK   = &status.Status{Code: int32(codes.OK)}
	valueTrue  = structpb.NewBoolValue(true)
	valueFalse = structpb.NewBoolValue(false)
)

// providerParts are the shared parts of one provider's allow answers.
type providerParts struct {
	header *corev3.HeaderValueOption // the provider header; nil when not configured
	value  *structpb.Value           // the provider's name in dynamic metadata
}

// providerParts returns the shared parts for provider, built once for
// every configured provider.
func (p *policy) providerParts(provider string) providerParts {
	if pp, ok := p.shared[provider]; ok {
		return pp
	}
	return p.buildProviderParts(provider)
}

func (p *policy) buildProviderParts(provider string) providerParts {
	pp := providerParts{value: structpb.NewStringValue(provider)}
	if h := p.Headers.Provider; h != "" {
		pp.header = setHeader(h, provider)
	}
	return pp
}

// strips reports whether a client-sent header must not reach the upstream
// unless this answer sets it: a configured identity or claim header, or any
// header with the strip prefix, each compared with "_" read as "-" (WSGI
// and CGI servers map x_auth_user and x-auth-user to one HTTP_X_AUTH_USER).
// name is lowercase, as Envoy sends it and headersOf keeps it.
func (p *policy) strips(name string) bool {
	if strings.IndexByte(name, '_') >= 0 {
		name = dashed(name)
	}
	if pre := p.stripPrefix; pre != "" && strings.HasPrefix(name, pre) {
		return true
	}
	return p.protected[name]
}

func isSet(set []*corev3.HeaderValueOption, name string) bool {
	for _, h := range set {
		if h.Header.Key == name {
			return true
		}
	}
	return false
}

// claimValue renders the claim at path as a header value: strings as they
// are, arrays joined with commas, objects as compact JSON. A value that
// cannot travel in a header (control characters) counts as absent.
func claimValue(claims map[string]any, path string) (string, bool) {
	v, ok := token.Lookup(claims, path)
	if !ok || v == nil {
		return "", false
	}
	var out string
	switch t := v.(type) {
	case string:
		out = t
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			s, ok := scalar(e)
			if !ok {
				b, _ := json.Marshal(e)
				s = string(b)
			}
			parts = append(parts, s)
		}
		out = strings.Join(parts, ",")
	default:
		s, ok := scalar(t)
		if !ok {
			b, _ := json.Marshal(t)
			s = string(b)
		}
		out = s
	}
	if !validHeaderValue(out) {
		return "", false
	}
	return out, true
}

func scalar(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case json.Number:
		return t.String(), true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(t), true
	}
	return "", false
}

// validHeaderValue rejects bytes HTTP forbids in field values (RFC 9110
// §5.5): controls other than tab, and DEL.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// denied builds the answer of d for err: tokenGiven says whether the
// request carried a credential (RFC 6750 then asks for
// error="invalid_token").
func (s *Server) denied(d Denial, err error, tokenGiven bool) *authv3.CheckResponse {
	detail := err.Error()
	body, _ := json.Marshal(struct {
		Error  string `json:"error"`
		Detail string `json:"detail"`
	}{string(d.Reason), detail})

	headers := []*corev3.HeaderValueOption{setHeader("content-type", "application/json")}
	if d.RetryAfter {
		secs := int(s.opts.RetryAfter.Seconds())
		headers = append(headers, setHeader("retry-after", strconv.Itoa(max(secs, 1))))
	}
	var se *route.ScopeError
	switch {
	case d.Challenge == ChallengeNone:
	case d.Challenge == ChallengeScope && errors.As(err, &se):
		headers = append(headers, setHeader("www-authenticate", fmt.Sprintf(
			`Bearer realm=%q, error="insufficient_scope", scope="%s"`, s.opts.Realm, quotable(strings.Join(se.Scopes, " ")))))
	case tokenGiven:
		headers = append(headers, setHeader("www-authenticate", fmt.Sprintf(
			`Bearer realm=%q, error="invalid_token", error_description="%s"`, s.opts.Realm, quotable(detail))))
	default:
		headers = append(headers, setHeader("www-authenticate", fmt.Sprintf(`Bearer realm=%q`, s.opts.Realm)))
	}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(d.Code), Message: string(d.Reason) + ": " + detail},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.HTTP)},
			Headers: headers,
			Body:    string(body),
		}},
	}
}

// quotable keeps only the characters RFC 6750 §3 allows in
// error_description, replacing the others, and bounds the length.
func quotable(s string) string {
	const maxLen = 200
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < maxLen; i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\'')
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
