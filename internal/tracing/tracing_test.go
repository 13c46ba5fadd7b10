package tracing

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestEnabled(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "OTEL_TRACES_EXPORTER" {
				return v
			}
			return ""
		}
	}
	for _, c := range []struct {
		configured bool
		exporter   string
		want       bool
	}{{false, "", false}, {true, "", true}, {false, "otlp", true}, {false, "none", false}, {true, "none", true}} {
		if got := Enabled(c.configured, env(c.exporter)); got != c.want {
			t.Errorf("Enabled(%v, OTEL_TRACES_EXPORTER=%q) = %v, want %v", c.configured, c.exporter, got, c.want)
		}
	}
}

func TestPropagatorReadsW3CAndB3(t *testing.T) {
	for name, h := range map[string]map[string]string{
		"w3c":      {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		"b3 multi": {"x-b3-traceid": "4bf92f3577b34da6a3ce929d0e0e4736", "x-b3-spanid": "00f067aa0ba902b7", "x-b3-sampled": "1"},
		"b3":       {"b3": "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"},
	} {
		sc := trace.SpanContextFromContext(Propagator().Extract(context.Background(), propagation.MapCarrier(h)))
		if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" || !sc.IsSampled() {
			t.Errorf("%s: extracted %v, want the trace, span and sampled flag", name, sc)
		}
	}
}

func TestNewRefusesAnUnknownProtocol(t *testing.T) {
	_, err := New(context.Background(), func(k string) string {
		if k == "OTEL_EXPORTER_OTLP_PROTOCOL" {
			return "http/json"
		}
		return ""
	})
	if err == nil {
		t.Error("New with OTEL_EXPORTER_OTLP_PROTOCOL=http/json succeeded, want an error naming it")
	}
}
