package main

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

// keySource is a provider's keys as the service sees them.
type keySource interface {
	token.KeySource
	Current() *keys.Set
}

// providers is every configured provider, built: the router that verifies
// tokens, the remote key sources to run, and what the Check path needs.
type providers struct {
	router       *token.Router
	sources      map[string]keySource
	remotes      map[string]*keys.Remote
	claimHeaders map[string][]authz.ClaimHeader
}

type buildOptions struct {
	now        func() time.Time
	logger     *slog.Logger
	metrics    *authz.Metrics // may be nil
	httpClient *http.Client   // may be nil
}

// buildProviders reads every provider's key files and schema and builds its
// verifier. Errors name the config key and the file.
func buildProviders(cfg *config, o buildOptions) (*providers, error) {
	ps := &providers{
		sources:      map[string]keySource{},
		remotes:      map[string]*keys.Remote{},
		claimHeaders: map[string][]authz.ClaimHeader{},
	}
	var verifiers []*token.Verifier
	var errs []error
	for i := range cfg.Providers {
		p := &cfg.Providers[i]
		key := fmt.Sprintf("providers[%d]", i)
		static, err := readStaticKeys(p, key, o.logger)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		schema, err := claims.Compile(p.ClaimsSchema)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.claims_schema: %w", key, err))
			continue
		}
		var src keySource = keys.NewStatic(keys.NewSet(static, 1))
		if p.JWKSURL != "" {
			name := p.Name
			r := keys.NewRemote(keys.RemoteOptions{
				URL:             p.JWKSURL,
				Static:          static,
				RefreshInterval: p.JWKSRefreshInterval,
				Client:          o.httpClient,
				Logger:          o.logger.With("provider", name),
				OnRefresh:       func(err error) { o.metrics.JWKSRefreshed(name, err) },
			})
			ps.remotes[name] = r
			src = r
		}
		ps.sources[p.Name] = src
		for h, c := range p.ClaimHeaders {
			ps.claimHeaders[p.Name] = append(ps.claimHeaders[p.Name], authz.ClaimHeader{Header: h, Claim: c})
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
			Now:           o.now,
		}))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	router, err := token.NewRouter(verifiers)
	if err != nil {
		return nil, fmt.Errorf("providers: %w", err)
	}
	ps.router = router
	return ps, nil
}

// readStaticKeys reads a provider's PEM files, JWKS file and HMAC secret, and
// checks that each key fits one of its algorithms.
func readStaticKeys(p *providerConfig, key string, logger *slog.Logger) ([]keys.Key, error) {
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

func anyFits(ks []keys.Key, algs []string) bool {
	for _, k := range ks {
		if keys.FitsAny(algs, k.Public) {
			return true
		}
	}
	return false
}

// ready reports whether every provider has at least one key.
func (ps *providers) ready() bool {
	for _, s := range ps.sources {
		if s.Current() == nil {
			return false
		}
	}
	return true
}

// runRemotes starts every remote key source's refresh loop until ctx ends.
func (ps *providers) runRemotes(ctx context.Context) {
	for _, r := range ps.remotes {
		go r.Run(ctx)
	}
}

// refreshOnce fetches every remote set once, for "verify".
func (ps *providers) refreshOnce(ctx context.Context) error {
	var errs []error
	for name, r := range ps.remotes {
		if err := r.Refresh(ctx); err != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
