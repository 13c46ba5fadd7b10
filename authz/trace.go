package authz

import (
	"context"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The span of a Check and its attributes. None holds the token or a claim
// value; user_id is the store's number.
const (
	spanCheck      = "jwtauthz.Check"
	spanCreateUser = "jwtauthz.store.create_user"
	attrDecision   = "jwtauthz.decision"
	attrReason     = "jwtauthz.reason"
	attrProvider   = "jwtauthz.provider"
	attrRoute      = "jwtauthz.route"
	attrUserID     = "jwtauthz.user_id"
	attrNewUser    = "jwtauthz.new_user"
)

// startSpan starts the server span of a Check, a child of the trace
// context in the request's headers (W3C or B3, as Envoy and Istio send
// them) when there is one.
func (s *Server) startSpan(ctx context.Context, req *authv3.CheckRequest) (context.Context, trace.Span) {
	if s.opts.Propagator != nil {
		ctx = s.opts.Propagator.Extract(ctx, carrier{req})
	}
	return s.opts.Tracer.Start(ctx, spanCheck, trace.WithSpanKind(trace.SpanKindServer))
}

// endSpan records the Check's outcome on its span and ends it.
func (c *checkState) endSpan(span trace.Span) {
	attrs := []attribute.KeyValue{
		attribute.String(attrDecision, c.decision),
		attribute.String(attrReason, string(c.reason)),
	}
	labels := c.labels()
	attrs = append(attrs, attribute.String(attrProvider, labels.provider), attribute.String(attrRoute, labels.route))
	if c.id != nil {
		attrs = append(attrs, attribute.String(attrUserID, strconv.FormatUint(c.id.ID, 10)), attribute.Bool(attrNewUser, c.id.New))
	}
	span.SetAttributes(attrs...)
	if c.decision == "deny" {
		span.SetStatus(codes.Error, string(c.reason))
	}
	span.End()
}

// userCreatedSpan records, after the fact, the span of a new user's
// durable write: made only when the Login created the user, so a known
// user's Login costs no span.
func (s *Server) userCreatedSpan(ctx context.Context, provider string, start time.Time) {
	_, span := s.opts.Tracer.Start(ctx, spanCreateUser, trace.WithTimestamp(start),
		trace.WithAttributes(attribute.String(attrProvider, provider)))
	span.End()
}

// carrier reads a CheckRequest's headers for a propagator, in either of
// Envoy's forms.
type carrier struct{ req *authv3.CheckRequest }

func (c carrier) Get(key string) string {
	h := c.req.GetAttributes().GetRequest().GetHttp()
	if v, ok := h.GetHeaders()[key]; ok {
		return v
	}
	for _, kv := range h.GetHeaderMap().GetHeaders() {
		if kv.GetKey() == key {
			return headerMapValue(kv)
		}
	}
	return ""
}

func (carrier) Set(string, string) {}

func (c carrier) Keys() []string {
	h := c.req.GetAttributes().GetRequest().GetHttp()
	keys := make([]string, 0, len(h.GetHeaders())+len(h.GetHeaderMap().GetHeaders()))
	for k := range h.GetHeaders() {
		keys = append(keys, k)
	}
	for _, kv := range h.GetHeaderMap().GetHeaders() {
		keys = append(keys, kv.GetKey())
	}
	return keys
}
