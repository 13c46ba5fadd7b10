// Package tracing builds jwtauthz's OpenTelemetry tracer provider: spans
// exported over OTLP as the standard OTEL_* variables say (endpoint,
// headers, protocol, sampler, service name), and the propagators that read
// a request's trace context as Envoy and Istio send it (W3C traceparent
// and tracestate, B3 single and multi header). Nothing here is global: the
// provider is handed to what makes spans.
package tracing

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/contrib/propagators/b3"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// ServiceName is the service.name of the spans unless OTEL_SERVICE_NAME
// says otherwise.
const ServiceName = "jwtauthz"

// Enabled reports whether tracing is on: by the config (tracing.enabled)
// or by OTEL_TRACES_EXPORTER=otlp.
func Enabled(configured bool, getenv func(string) string) bool {
	return configured || strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) == "otlp"
}

// New returns a tracer provider that batches spans to the OTLP endpoint
// the OTEL_EXPORTER_OTLP_* variables name (gRPC by default, HTTP with
// OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf), sampled parent-based unless
// OTEL_TRACES_SAMPLER says otherwise. Shut it down to flush what is
// pending.
func New(ctx context.Context, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	var client otlptrace.Client
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "", "grpc":
		client = otlptracegrpc.NewClient()
	case "http/protobuf":
		client = otlptracehttp.NewClient()
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", protocol)
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName(ServiceName)),
		resource.Environment(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	// With no sampler option the SDK reads OTEL_TRACES_SAMPLER and its
	// argument, and defaults to parent-based always-on.
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// Propagator reads and writes the trace context of a request in the forms
// Envoy and Istio use: W3C trace context (and baggage), and B3 in its
// single and multi header forms.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{},
		propagation.Baggage{},
		b3.New(b3.WithInjectEncoding(b3.B3MultipleHeader|b3.B3SingleHeader)),
	)
}
