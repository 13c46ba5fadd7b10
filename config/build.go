package config

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.yaml.in/yaml/v3"

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

	loops   map[string]*loop // the remotes' refresh loops, by remoteKey
	metrics *authz.Metrics
	doc     *yaml.Node // the config's document, for the lines of fetch errors
}

// loop is one remote key source's refresh loop. A reload that keeps a
// provider's remote (same name, URL or discovery issuer, refresh interval
// and static keys) keeps its loop, and with it the keys it fetched.
type loop struct {
	provider string
	key      string // the config key it comes from: providers[i].jwks_url or .discovery
	source   string // the URL and discovery issuer it fetches from
	interval time.Duration
	remote   *keys.Remote
	cancel   context.CancelFunc // nil until started
	done     chan struct{}
}

// BuildOptions are what building needs beyond the config.
type BuildOptions struct {
	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // default: discard
	Metrics    *authz.Metrics   // may be nil
	HTTPClient *http.Client     // for JWKS fetches; nil: a client with a timeout
	Tracer     trace.Tracer     // spans of JWKS and discovery fetches; nil: none
	// Reuse, when set, are the providers of the running config: a remote
	// key source that would be built the same is taken over, keys and
	// refresh loop, instead of being fetched again.
	Reuse *Providers
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
		loops:        map[string]*loop{},
		metrics:      o.Metrics,
		doc:          cfg.doc,
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
			errs = append(errs, keyError(key+".claims_schema", err))
			continue
		}
		logger := o.Logger.With("provider", p.Name)
		var src KeySource = keys.NewStatic(keys.NewSet(static, 1)).WithLogger(logger)
		if p.JWKSURL != "" || p.Discovery {
			name := p.Name
			rk, source := remoteKey(p, static), p.JWKSURL+"|"+discoveryIssuer(p)
			l := o.Reuse.loop(rk)
			if l == nil {
				// A changed refresh interval or static keys make a new
				// source, which starts from the keys the running one
				// fetched from the same place.
				l = &loop{provider: name, key: key + remoteField(p), source: source, interval: p.JWKSRefreshInterval, remote: keys.NewRemote(keys.RemoteOptions{
					URL:             p.JWKSURL,
					DiscoveryIssuer: discoveryIssuer(p),
					Static:          static,
					RefreshInterval: p.JWKSRefreshInterval,
					Client:          o.HTTPClient,
					Tracer:          o.Tracer,
					Logger:          logger,
					OnRefresh:       func(err error) { o.Metrics.JWKSRefreshed(name, err) },
					Seed:            o.Reuse.remoteFrom(name, source),
				})}
			}
			ps.loops[rk] = l
			ps.Remotes[name] = l.remote
			src = l.remote
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
		return nil, withLines(cfg.doc, errors.Join(errs...))
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
			errs = append(errs, keyError(fmt.Sprintf("%s.pem_files[%d]", key, i), err))
			continue
		}
		for _, k := range ks {
			if !keys.FitsAny(p.Algorithms, k.Public) {
				errs = append(errs, &KeyError{Key: fmt.Sprintf("%s.pem_files[%d]", key, i), Msg: fmt.Sprintf("%s: a %s key fits none of the algorithms %v", f, keys.Describe(k.Public), p.Algorithms)})
			}
		}
		out = append(out, ks...)
	}
	if p.JWKSFile != "" {
		ks, skipped, err := keys.ReadJWKSFile(p.JWKSFile)
		switch {
		case err != nil:
			errs = append(errs, keyError(key+".jwks_file", err))
		case !anyFits(ks, p.Algorithms):
			errs = append(errs, &KeyError{Key: key + ".jwks_file", Msg: fmt.Sprintf("%s: no key fits the algorithms %v", p.JWKSFile, p.Algorithms)})
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
			errs = append(errs, keyError(key+".hmac_secret_file", err))
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
	loaded, total := ps.Loaded()
	return loaded == total
}

// Loaded counts the providers that have at least one key, of all.
func (ps *Providers) Loaded() (loaded, total int) {
	for _, s := range ps.Sources {
		if s.Current() != nil {
			loaded++
		}
	}
	return loaded, len(ps.Sources)
}

// Start starts the refresh loops of ps's remote key sources that are not
// running yet (those taken over from a running config are); they run
// until ctx ends or Retire stops them. It announces ps's providers to the
// metrics: until Start, ps is not in force.
func (ps *Providers) Start(ctx context.Context) {
	for _, name := range ps.Names {
		ps.metrics.ProviderAdded(name)
	}
	for _, l := range ps.loops {
		if l.cancel != nil {
			continue
		}
		ps.metrics.JWKSProvider(l.provider, l.interval)
		ctx, cancel := context.WithCancel(ctx)
		l.cancel, l.done = cancel, make(chan struct{})
		go func() {
			defer close(l.done)
			l.remote.Run(ctx)
		}()
	}
}

// Retire stops the refresh loops of ps that next did not take over and
// waits for them to end; with next nil, every loop. The series of the
// providers next does not have are dropped, and the JWKS freshness series
// of those whose keys next does not fetch. A reload that fails once ps is
// built retires ps in favour of the running providers, so that nothing of
// it is left behind.
func (ps *Providers) Retire(next *Providers) {
	for k, l := range ps.loops {
		if next != nil && next.loops[k] == l {
			continue
		}
		if l.cancel != nil {
			l.cancel()
			<-l.done
		}
	}
	for _, name := range ps.Names {
		switch {
		case next == nil || !slices.Contains(next.Names, name):
			ps.metrics.ProviderRemoved(name)
		case next.Remotes[name] == nil:
			ps.metrics.JWKSForget(name)
		}
	}
}

// remoteFrom returns the running remote of provider name that fetches
// from source, or nil.
func (ps *Providers) remoteFrom(name, source string) *keys.Remote {
	if ps == nil {
		return nil
	}
	for _, l := range ps.loops {
		if l.provider == name && l.source == source {
			return l.remote
		}
	}
	return nil
}

// loop returns the loop of a remote built as rk, or nil.
func (ps *Providers) loop(rk string) *loop {
	if ps == nil {
		return nil
	}
	return ps.loops[rk]
}

// remoteKey says what a provider's remote key source is built from: two
// providers with one key hold the same keys and may share a loop.
func remoteKey(p *Provider, static []keys.Key) string {
	h := sha256.New()
	for _, k := range static {
		fmt.Fprintf(h, "%s|%s|", k.ID, k.Alg)
		switch pub := k.Public.(type) {
		case []byte:
			h.Write(pub)
		default:
			der, _ := x509.MarshalPKIXPublicKey(pub)
			h.Write(der)
		}
	}
	return fmt.Sprintf("%s|%s|%s|%v|%x", p.Name, p.JWKSURL, discoveryIssuer(p), p.JWKSRefreshInterval, h.Sum(nil))
}

// FetchNew fetches, at once and together, the remote sets that a reload
// built anew and that did not start from a running source's keys: a new
// provider, or a new URL or discovery issuer. A reload calls it before
// the swap, so that no Check meets a provider without keys.
func (ps *Providers) FetchNew(ctx context.Context) error {
	return ps.fetch(ctx, func(l *loop) bool { return l.cancel == nil && !l.remote.Loaded() })
}

// RefreshOnce fetches every remote set once, for "verify" and "validate".
func (ps *Providers) RefreshOnce(ctx context.Context) error {
	return ps.fetch(ctx, func(*loop) bool { return true })
}

// fetch fetches the sets of the loops that want, together. Each error
// names the provider's config key and line.
func (ps *Providers) fetch(ctx context.Context, want func(*loop) bool) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, l := range ps.loops {
		if !want(l) {
			continue
		}
		wg.Go(func() {
			if err := l.remote.Refresh(ctx); err != nil {
				mu.Lock()
				errs = append(errs, &KeyError{Key: l.key, Msg: fmt.Sprintf("provider %q: %v", l.provider, err), Err: err})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return withLines(ps.doc, errors.Join(errs...))
}

// remoteField is the key of p's remote key source.
func remoteField(p *Provider) string {
	if p.Discovery {
		return ".discovery"
	}
	return ".jwks_url"
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
		CacheMaxBytes:        cfg.Cache.MaxBytes,
	}, nil
}

func tokenSources(srcs []TokenSource) []authz.TokenSource {
	out := make([]authz.TokenSource, len(srcs))
	for i, s := range srcs {
		out[i] = authz.TokenSource(s)
	}
	return out
}
