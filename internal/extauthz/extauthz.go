// Package extauthz speaks as Envoy's ext_authz HTTP filter does: it builds
// the CheckRequest Envoy sends for a downstream request (pseudo-headers,
// lowercased names, the ids and forwarding headers Envoy adds), and
// describes a CheckResponse the way Envoy acts on it. The check command,
// the benchmarks' request files and tests use it.
package extauthz

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Request describes the downstream HTTP request a CheckRequest stands for.
type Request struct {
	Addr    string   // the ext_authz server; its host is the default Host
	Token   string   // sent as "authorization: Bearer <Token>" when set
	Headers []string // "name: value" each, applied after Token (so they can replace it)
	Cookies []string // "name=value" each, sent in one cookie header
	Method  string   // default GET
	Path    string   // default /
	Host    string   // :authority; default Addr's host, or example.com
	// ContextExtensions are the pairs of Envoy's per-route
	// ExtAuthzPerRoute.check_settings.
	ContextExtensions map[string]string
	ID                string // Envoy's stream ID; default random
	Now               time.Time
}

// Socket addresses put in attributes.source and .destination: a client on
// the loopback talking to an Envoy listener, as in a local sidecar.
const (
	sourceIP        = "127.0.0.1"
	sourcePort      = 54321
	destinationIP   = "127.0.0.1"
	destinationPort = 8080
)

// New builds the CheckRequest Envoy's ext_authz HTTP filter sends
// for the request o describes: attributes.request.http with the request's
// fields and its headers in a map with lowercased names, the HTTP/2-style
// pseudo-headers included, plus the x-request-id and x-forwarded-proto Envoy
// adds before its filters run.
func New(o Request) (*authv3.CheckRequest, error) {
	method := o.Method
	if method == "" {
		method = "GET"
	}
	path := o.Path
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("path %q must start with /", path)
	}
	host := o.Host
	if host == "" {
		host = DefaultHost(o.Addr)
	}
	id := o.ID
	if id == "" {
		id = strconv.FormatUint(StreamID(), 10)
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}

	const scheme = "http"
	headers := map[string]string{
		":method":           method,
		":path":             path,
		":authority":        host,
		":scheme":           scheme,
		"x-request-id":      RequestID(),
		"x-forwarded-proto": scheme,
	}
	if o.Token != "" {
		headers["authorization"] = "Bearer " + o.Token
	}
	for _, c := range o.Cookies {
		if name, _, ok := strings.Cut(c, "="); !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("cookie %q: want 'name=value'", c)
		}
	}
	if len(o.Cookies) > 0 {
		headers["cookie"] = strings.Join(o.Cookies, "; ")
	}
	seen := make(map[string]bool)
	for _, h := range o.Headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" {
			return nil, fmt.Errorf("header %q: want 'name: value' (pseudo-headers come from --method, --path and --host)", h)
		}
		if strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("header %q: a name cannot contain spaces", h)
		}
		value = strings.TrimSpace(value)
		// A repeated header reaches the ext_authz server joined with commas,
		// as Envoy merges it (RFC 9110 section 5.3); the first occurrence
		// replaces any default above.
		if seen[name] {
			headers[name] += "," + value
		} else {
			headers[name] = value
			seen[name] = true
		}
	}

	return &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{
			ContextExtensions: o.ContextExtensions,
			Source:            Peer(sourceIP, sourcePort),
			Destination:       Peer(destinationIP, destinationPort),
			Request: &authv3.AttributeContext_Request{
				Time: timestamppb.New(now),
				Http: &authv3.AttributeContext_HttpRequest{
					Id:       id,
					Method:   method,
					Headers:  headers,
					Path:     path,
					Host:     host,
					Scheme:   scheme,
					Protocol: "HTTP/1.1",
				},
			},
		},
	}, nil
}

// DefaultHost is the :authority used when none is given: the host of
// the server address (an IPv6 one in brackets), or example.com when the
// address has no usable host.
func DefaultHost(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.Contains(host, "/") {
		return "example.com"
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// Peer is a TCP peer at ip:port, as Envoy describes a request's source
// and destination.
func Peer(ip string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{
				Protocol:      corev3.SocketAddress_TCP,
				Address:       ip,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			},
		}},
	}
}

// StreamID returns a stream ID like Envoy's: random, and positive even
// in a signed 64-bit type.
func StreamID() uint64 {
	var b [8]byte
	rand.Read(b[:]) // crypto/rand.Read never fails
	return binary.BigEndian.Uint64(b[:]) >> 1
}

// RequestID returns a version 4 UUID, the form of Envoy's x-request-id.
func RequestID() string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Print writes resp for a person: the decision (allow when
// the status is OK, as Envoy decides), the status, then what Envoy would do
// with the request or the denial.
func Print(w io.Writer, resp *authv3.CheckResponse) {
	st := resp.GetStatus()
	decision := "allow"
	if codes.Code(st.GetCode()) != codes.OK {
		decision = "deny"
	}
	fmt.Fprintf(w, "decision: %s\n", decision)
	if r := resp.GetDynamicMetadata().GetFields()["route"].GetStringValue(); r != "" {
		fmt.Fprintf(w, "route: %s\n", r)
	}
	statusLine := code.Code(st.GetCode()).String()
	if st.GetMessage() != "" {
		statusLine += ": " + st.GetMessage()
	}
	fmt.Fprintf(w, "grpc status: %s\n", statusLine)

	metadata := resp.GetDynamicMetadata()
	if decision == "allow" {
		ok := resp.GetOkResponse()
		printHeaderOptions(w, "set header:  ", ok.GetHeaders(), true)
		for _, h := range ok.GetHeadersToRemove() {
			fmt.Fprintf(w, "remove header: %s\n", h)
		}
		printHeaderOptions(w, "response header: ", ok.GetResponseHeadersToAdd(), false)
		for _, q := range ok.GetQueryParametersToSet() {
			fmt.Fprintf(w, "set query parameter: %s=%s\n", q.GetKey(), q.GetValue())
		}
		for _, q := range ok.GetQueryParametersToRemove() {
			fmt.Fprintf(w, "remove query parameter: %s\n", q)
		}
		if metadata == nil {
			metadata = ok.GetDynamicMetadata() // deprecated place, still read by Envoy
		}
	} else {
		denied := resp.GetDeniedResponse()
		if c := denied.GetStatus().GetCode(); c != 0 {
			fmt.Fprintf(w, "http status: %d\n", int32(c))
		} else {
			fmt.Fprintln(w, "http status: 403 (Envoy's default: no denied_response status)")
		}
		printHeaderOptions(w, "set header:  ", denied.GetHeaders(), false)
		if body := denied.GetBody(); body != "" {
			fmt.Fprintf(w, "body: %s\n", body)
		}
	}
	if metadata != nil {
		fmt.Fprintf(w, "dynamic metadata: %s\n", compactStructJSON(metadata))
	}
}

// printHeaderOptions prints headers. With showAppend, a header that is not
// plainly set (overwriting any the client sent) is marked with the field
// that makes it so, since an appended identity header could be spoofed.
func printHeaderOptions(w io.Writer, label string, hs []*corev3.HeaderValueOption, showAppend bool) {
	for _, h := range hs {
		value := h.GetHeader().GetValue()
		if value == "" {
			value = string(h.GetHeader().GetRawValue())
		}
		note := ""
		switch {
		case !showAppend:
		case h.GetAppend() != nil:
			// Envoy reads the deprecated field first when it is set.
			if h.GetAppend().GetValue() {
				note = " (append: true)"
			}
		case h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			note = " (append_action: " + h.GetAppendAction().String() + ")"
		}
		fmt.Fprintf(w, "%s%s: %s%s\n", label, h.GetHeader().GetKey(), value, note)
	}
}

// compactStructJSON renders s as one line of JSON with sorted keys.
func compactStructJSON(s *structpb.Struct) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s.AsMap()); err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}
