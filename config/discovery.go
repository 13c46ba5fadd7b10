package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/jwtauthz/jwtauthz/authz/keys"
)

// validateDiscovery checks providers[].discovery: the document is read
// from {issuer}/.well-known/openid-configuration, so it needs an http(s)
// issuer, and it supplies the JWK Set's URL, so jwks_url must be empty.
func (p *Provider) validateDiscovery(key string) []error {
	if !p.Discovery {
		return nil
	}
	var errs []error
	add := func(k, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key + "." + k, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case p.Issuer == "":
		add("discovery", "needs issuer: the discovery document is read from {issuer}/.well-known/openid-configuration")
	case !strings.HasPrefix(p.Issuer, "https://") && !strings.HasPrefix(p.Issuer, "http://"):
		add("issuer", "%q must be an http(s) URL when discovery is true", shownURL(p.Issuer))
	case strings.ContainsAny(p.Issuer, "?#"):
		add("issuer", "%q must have no query or fragment when discovery is true (OpenID Connect Discovery)", shownURL(p.Issuer))
	}
	if p.JWKSURL != "" {
		add("discovery", "is refused together with jwks_url: discovery supplies the JWK Set's URL (its jwks_uri); remove one")
	} else if p.JWKSRefreshInterval < time.Second {
		add("jwks_refresh_interval", "must be at least 1s, got %v", p.JWKSRefreshInterval)
	}
	return errs
}

// shownURL is a URL as errors may show it: without user-info or query.
func shownURL(raw string) string { return keys.RedactURL(raw) }
