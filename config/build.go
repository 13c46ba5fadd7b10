package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/claims"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
)

// KeySource is a provider's keys as the service sees them.
type KeySource interface {
	token.KeySource
	Current() *keys.Set
}

// Providers is every configured provider, built: the router that verifies
// tokens, the remote key sources to run, and what the Check path needs.
type Providers struct {
	Router       *token.Router
	Sources      map[string]KeySource
	Remotes      map[string]*keys.Remote
	ClaimHeaders map[string][]authz.ClaimHeader
	Names        []string // in config order
}

// BuildOptions are what building needs beyond the config.
type BuildOptions struct {
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // default: discard
	Metrics    *authz.Metrics   // may be nil
	HTTPClient *http.Client     // for JWKS fetches; nil: a client with a timeout
}

func (o *BuildOptions) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// BuildProviders reads every provider's key files and schema and builds
// its verifier. Errors name the config key and the file. Remote key sources
// (jwks_url, or discovery's jwks_uri) fetch nothing until Run or
// RefreshOnce.
func BuildProviders(cfg *Config, o BuildOptions) (*Providers, error) {
	o.defaults()
	ps := &Providers{
		Sources:      map[string]KeySource{},
		Remotes:      map[string]*keys.Remote{},
		ClaimHeaders: map[string][]authz.ClaimHeader{},
	}
	var verifiers []*token.Verifier
	var errs []error
	for i := range cfg.Providers {
		p := &cfg.Providers[i]
		key := fmt.Sprintf("providers[%d]", i)
		static, err := readStaticKeys(p, key, o.Logger)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		schema, err := claims.Compile(p.ClaimsSchema)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.claims_schema: %w", key, err))
			continue
		}
		logger := o.Logger.With("provider", p.Name)
		var src KeySource = keys.NewStatic(keys.NewSet(static, 1)).WithLogger(logger)
		if p.JWKSURL != "" || p.Discovery {
			name := p.Name
			r := keys.NewRemote(keys.RemoteOptions{
				URL:             p.JWKSURL,
				DiscoveryIssuer: discoveryIssuer(p),
				Static:          static,
				RefreshInterval: p.JWKSRefreshInterval,
				Client:          o.HTTPClient,
				Logger:          logger,
				OnRefresh:       func(err error) { o.Metrics.JWKSRefreshed(name, err) },
			})
			o.Metrics.JWKSProvider(name, p.JWKSRefreshInterval)
			ps.Remotes[name] = r
			src = r
		}
		ps.Sources[p.Name] = src
		ps.Names = append(ps.Names, p.Name)
		for h, c := range p.ClaimHeaders {
			ps.ClaimHeaders[p.Name] = append(ps.ClaimHeaders[p.Name], authz.ClaimHeader{Header: h, Claim: c})
		}
		verifiers = append(verifiers, token.NewVerifier(token.Options{
			Provider:      p.Name,
			Issuer:        p.Issuer,
			Audiences:     p.Audiences,
			Algorithms:    p.Algorithms,
			Leeway:        p.Leeway,
			UsernameClaim: p.UsernameClaim,
			Keys:          src,
			Schema:        schema,
			Now:           o.Now,
		}))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	router, err := token.NewRouter(verifiers)
	if err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	ps.Router = router
	return ps, nil
}

// readStaticKeys reads a provider's PEM files, JWKS file and HMAC secret, and
// checks that each key fits one of its algorithms.
func readStaticKeys(p *Provider, key string, logger *slog.Logger) ([]keys.Key, error) {
	var out []keys.Key
	var errs []error
	for i, f := range p.PEMFiles {
		ks, err := keys.ReadPEMFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.pem_files[%d]: %w", key, i, err))
			continue
		}
		for _, k := range ks {
			if !keys.FitsAny(p.Algorithms, k.Public) {
				errs = append(errs, fmt.Errorf("%s.pem_files[%d]: %s: a %s key fits none of the algorithms %v", key, i, f, keys.Describe(k.Public), p.Algorithms))
			}
		}
		out = append(out, ks...)
	}
	if p.JWKSFile != "" {
		ks, skipped, err := keys.ReadJWKSFile(p.JWKSFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s.jwks_file: %w", key, err))
		case !anyFits(ks, p.Algorithms):
			errs = append(errs, fmt.Errorf("%s.jwks_file: %s: no key fits the algorithms %v", key, p.JWKSFile, p.Algorithms))
		default:
			for _, s := range skipped {
				logger.Warn("JWKS file key skipped", "provider", p.Name, "file", p.JWKSFile, "err", s)
			}
			out = append(out, ks...)
		}
	}
	if p.HMACSecretFile != "" {
		k, err := keys.ReadHMACFile(p.HMACSecretFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.hmac_secret_file: %w", key, err))
		} else {
			out = append(out, k)
		}
	}
	return out, errors.Join(errs...)
}

// discoveryIssuer is the issuer whose discovery document names the JWK
// Set, or "" when the provider does not use discovery.
func discoveryIssuer(p *Provider) string {
	if !p.Discovery {
		return ""
	}
	return p.Issuer
}

func anyFits(ks []keys.Key, algs []string) bool {
	for _, k := range ks {
		if keys.FitsAny(algs, k.Public) {
			return true
		}
	}
	return false
}

// Ready reports whether every provider has at least one key.
func (ps *Providers) Ready() bool {
	for _, s := range ps.Sources {
		if s.Current() == nil {
			return false
		}
	}
	return true
}

// Run starts every remote key source's refresh loop until ctx ends.
func (ps *Providers) Run(ctx context.Context) {
	for _, r := range ps.Remotes {
		go r.Run(ctx)
	}
}

// RefreshOnce fetches every remote set once, for "verify" and "validate".
func (ps *Providers) RefreshOnce(ctx context.Context) error {
	var errs []error
	for name, r := range ps.Remotes {
		if err := r.Refresh(ctx); err != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Policy is the Check policy of cfg, over its built providers.
func Policy(cfg *Config, ps *Providers) (*authz.Policy, error) {
	routes, err := Routes(cfg)
	if err != nil {
		return nil, err
	}
	ih := cfg.IdentityHeaders
	return &authz.Policy{
		Verifier: ps.Router,
		Headers: authz.IdentityHeaders{
			User: ih.User, UserID: ih.UserID, Provider: ih.Provider, Payload: ih.Payload, StripPrefix: ih.StripPrefix,
		},
		ClaimHeaders:         ps.ClaimHeaders,
		Providers:            ps.Names,
		ForwardAuthorization: cfg.ForwardAuthorization,
		TokenSources:         tokenSources(cfg.TokenSources),
		Routes:               routes,
		CacheMaxEntries:      cfg.Cache.MaxEntries,
	}, nil
}

func tokenSources(srcs []TokenSource) []authz.TokenSource {
	out := make([]authz.TokenSource, len(srcs))
	for i, s := range srcs {
		out[i] = authz.TokenSource(s)
	}
	return out
}
