package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// maxDocumentBytes bounds a JWK Set or a discovery document; real ones are
// a few kilobytes.
const maxDocumentBytes = 1 << 20

// validators are the cache validators of the last 200 answer from url,
// sent back so that an unchanged document costs a 304.
type validators struct {
	url, etag, lastModified string
}

// discovered is the last discovery document that passed its checks.
type discovered struct {
	validators
	jwksURI string
}

// DiscoveryURL is the OpenID Connect discovery document of issuer: any
// trailing "/" is removed before /.well-known/openid-configuration is
// appended (OpenID Connect Discovery 1.0 §4).
func DiscoveryURL(issuer string) string {
	return strings.TrimRight(issuer, "/") + "/.well-known/openid-configuration"
}

// fetch runs one refresh: the discovery document when configured, then the
// JWK Set. It stores a new Set only when the keys changed, so an unchanged
// answer (or a 304) keeps the Generation and the token cache.
func (r *Remote) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.HTTPTimeout)
	defer cancel()
	jwksURL := r.opts.URL
	if r.opts.DiscoveryIssuer != "" {
		u, err := r.discover(ctx)
		if err != nil {
			return err
		}
		jwksURL = u
	}
	if jwksURL == "" {
		return errors.New("fetch JWKS: no URL configured")
	}
	resp, err := r.get(ctx, "JWKS", jwksURL, r.jwks, "application/jwk-set+json, application/json")
	if err != nil {
		return err
	}
	if resp.notModified {
		if f := r.last.Load(); f != nil {
			r.last.Store(&fetched{keys: f.keys, jwks: r.jwks, disc: r.disc})
		}
		return nil
	}
	keys, skipped, err := ParseJWKS(resp.body)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", RedactURL(jwksURL), err)
	}
	for _, s := range skipped {
		r.opts.Logger.Warn("JWKS key skipped", "url", RedactURL(jwksURL), "err", s)
	}
	r.jwks = resp.next
	r.store(&fetched{keys: keys, jwks: r.jwks, disc: r.disc})
	return nil
}

// discover reads the discovery document and returns its jwks_uri. A
// document whose issuer is not exactly the configured one is refused, and
// no key is loaded from it.
func (r *Remote) discover(ctx context.Context) (string, error) {
	issuer := r.opts.DiscoveryIssuer
	docURL := DiscoveryURL(issuer)
	shown := RedactURL(docURL)
	resp, err := r.get(ctx, "discovery document", docURL, r.disc.validators, "application/json")
	if err != nil {
		return "", err
	}
	if resp.notModified {
		return r.disc.jwksURI, nil
	}
	var doc struct {
		Issuer  *string `json:"issuer"`
		JWKSURI *string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		return "", fmt.Errorf("discovery document %s: decode: %w", shown, err)
	}
	switch {
	case doc.Issuer == nil:
		return "", fmt.Errorf("discovery document %s has no issuer", shown)
	case *doc.Issuer != issuer:
		return "", fmt.Errorf("discovery document %s: its issuer %.256q is not the configured issuer %q: no key is loaded from it",
			shown, RedactURL(*doc.Issuer), RedactURL(issuer))
	case doc.JWKSURI == nil || *doc.JWKSURI == "":
		return "", fmt.Errorf("discovery document %s has no jwks_uri", shown)
	}
	jwksURI := *doc.JWKSURI
	u, err := url.Parse(jwksURI)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "", fmt.Errorf("discovery document %s: jwks_uri %s is not an absolute http(s) URL", shown, RedactURL(jwksURI))
	case u.Scheme == "http" && strings.HasPrefix(docURL, "https://"):
		return "", fmt.Errorf("discovery document %s: jwks_uri %s is plain http, but the issuer is https", shown, RedactURL(jwksURI))
	}
	r.disc = discovered{validators: resp.next, jwksURI: jwksURI}
	return jwksURI, nil
}

// response is one GET's outcome: a body, or notModified.
type response struct {
	body        []byte
	notModified bool
	next        validators // to send next time, once the body is accepted
}

// get fetches rawURL, conditionally when last holds validators for it.
// Errors name what was fetched and the URL, redacted.
func (r *Remote) get(ctx context.Context, what, rawURL string, last validators, accept string) (resp response, err error) {
	shown := RedactURL(rawURL)
	spanName := "jwtauthz.jwks.fetch"
	if what != "JWKS" {
		spanName = "jwtauthz.discovery.fetch"
	}
	ctx, span := r.opts.Tracer.Start(ctx, spanName, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("url.full", shown)))
	defer func() {
		span.SetAttributes(attribute.Bool("jwtauthz.not_modified", resp.notModified))
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	return r.doGet(ctx, what, rawURL, shown, last, accept)
}

func (r *Remote) doGet(ctx context.Context, what, rawURL, shown string, last validators, accept string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return response{}, fmt.Errorf("fetch %s %s: %w", what, shown, scrub(err, rawURL))
	}
	req.Header.Set("Accept", accept)
	conditional := last.url == rawURL && (last.etag != "" || last.lastModified != "")
	if conditional {
		if last.etag != "" {
			req.Header.Set("If-None-Match", last.etag)
		}
		if last.lastModified != "" {
			req.Header.Set("If-Modified-Since", last.lastModified)
		}
	}
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("fetch %s %s: %w", what, shown, scrub(err, rawURL))
	}
	defer resp.Body.Close()
	trace.SpanFromContext(ctx).SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		return response{notModified: true, next: last}, nil
	case resp.StatusCode != http.StatusOK:
		return response{}, fmt.Errorf("fetch %s %s: HTTP status %d", what, shown, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return response{}, fmt.Errorf("read %s %s: %w", what, shown, scrub(err, rawURL))
	}
	if len(body) > maxDocumentBytes {
		return response{}, fmt.Errorf("%s %s is larger than %d bytes", what, shown, maxDocumentBytes)
	}
	return response{body: body, next: validators{url: rawURL, etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")}}, nil
}
