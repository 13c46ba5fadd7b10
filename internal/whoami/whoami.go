// Package whoami is a stand-in upstream for trying jwtauthz behind Envoy: it
// answers every request with the identity headers that reached it, as JSON.
package whoami

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// PayloadHeader is the conventional name for identity_headers.payload;
// whoami echoes it and decodes it when it is present.
const PayloadHeader = "x-jwt-payload"

// Reply is the JSON body whoami answers with.
type Reply struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Headers holds the identity headers received, names lowercased, values
	// of a repeated header joined with ", " (a repeat means something upstream
	// appended instead of overwriting).
	Headers map[string]string `json:"headers"`
	// Authorization says whether an authorization header arrived; its value
	// (the token) is never echoed.
	Authorization bool `json:"authorization_present"`
	// Claims is x-jwt-payload decoded (base64url of the claims JSON), when
	// it is present and decodes.
	Claims json.RawMessage `json:"claims,omitempty"`
}

// Handler answers every request with the identity headers that reached it:
// those whose lowercased name starts with prefix, and those named in names
// (lowercase). It never echoes the authorization header, only whether one
// arrived.
func Handler(prefix string, names []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply := Reply{
			Method:        r.Method,
			Path:          r.URL.Path,
			Headers:       map[string]string{},
			Authorization: r.Header.Get("Authorization") != "",
		}
		for name, vs := range r.Header {
			lower := strings.ToLower(name)
			if lower == "authorization" {
				continue
			}
			if (prefix != "" && strings.HasPrefix(lower, prefix)) || slices.Contains(names, lower) {
				reply.Headers[lower] = strings.Join(vs, ", ")
			}
		}
		if p := r.Header.Get(PayloadHeader); p != "" {
			reply.Claims = decodePayload(p)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(reply)
	})
}

// decodePayload decodes a base64url (padded or not) JSON object, or returns
// nil when it is not one.
func decodePayload(s string) json.RawMessage {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || !json.Valid(b) || !strings.HasPrefix(strings.TrimSpace(string(b)), "{") {
		return nil
	}
	return b
}
