// Package config reads jwtauthz's YAML config file into validated
// options, and builds from them what the service runs on: the providers
// (key sources and verifiers), the Check policy and the user store. It is
// imported by cmd/jwtauthz, by reload, by tests and by the benchmarks;
// never by authz or store, which take their own small Options.
//
// Unknown keys and bad values are errors that name the key path and the
// line: "config jwtauthz.yaml: line 7: unknown key \"providers[0].pem_file\"".
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jwtauthz/jwtauthz/authz/token"
)

// Config is the whole config file. Field tags are the keys; README.md
// ("Configuration") lists every key with its default.
type Config struct {
	Listen               string          `yaml:"listen"`
	HTTPListen           string          `yaml:"http_listen"`
	Admin                Admin           `yaml:"admin"`
	Store                Store           `yaml:"store"`
	Cache                Cache           `yaml:"cache"`
	Providers            []Provider      `yaml:"providers"`
	IdentityHeaders      IdentityHeaders `yaml:"identity_headers"`
	ForwardAuthorization bool            `yaml:"forward_authorization"`
	TokenSources         []TokenSource   `yaml:"token_sources"`
	Routes               []Route         `yaml:"routes"`
	DefaultRoute         DefaultRoute    `yaml:"default_route"`
	Tracing              Tracing         `yaml:"tracing"`

	doc *yaml.Node // the document Parse read, for the lines of later errors
}

// Tracing is tracing.*: OpenTelemetry spans of every Check, exported over
// OTLP as the standard OTEL_* variables say.
type Tracing struct {
	// Enabled turns tracing on; so does OTEL_TRACES_EXPORTER=otlp.
	Enabled bool `yaml:"enabled"`
}

// TokenSource is one entry of token_sources: a header (with an optional
// scheme prefix), a cookie or a query parameter.
type TokenSource struct {
	Header string `yaml:"header"`
	Prefix string `yaml:"prefix"`
	Cookie string `yaml:"cookie"`
	Query  string `yaml:"query"`
}

// Admin is the admin API (admin.*).
type Admin struct {
	Listen        string         `yaml:"listen"`
	RequireClaims map[string]any `yaml:"require_claims"`
	// AllowAnyVerifiedToken opens the admin API to every token the
	// providers verify; without it, require_claims must name a claim.
	AllowAnyVerifiedToken bool `yaml:"allow_any_verified_token"`
	// Providers, when set, are the only providers whose tokens may call
	// the admin API (an HS256 partner's tokens, say, never should).
	Providers []string `yaml:"providers"`
}

// The store backends (store.backend).
const (
	BackendBolt = "bolt"
	BackendEtcd = "etcd"
)

// Store is the user store (store.*).
type Store struct {
	Backend string `yaml:"backend"`
	Path    string `yaml:"path"`
	Etcd    *Etcd  `yaml:"etcd"` // nil when absent; only with backend etcd
}

// Etcd is store.etcd.
type Etcd struct {
	Endpoints    []string      `yaml:"endpoints"`
	Prefix       string        `yaml:"prefix"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	TLS          EtcdTLS       `yaml:"tls"`
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
}

// EtcdTLS is store.etcd.tls.
type EtcdTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

func (t EtcdTLS) set() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Cache is the verified-token cache (cache.*).
type Cache struct {
	MaxEntries int `yaml:"max_entries"`
	// MaxBytes bounds the cache's estimated memory; 0 means 64 MiB
	// (authz.DefaultCacheMaxBytes).
	MaxBytes int `yaml:"max_bytes"`
}

// Provider is one entry of providers: an issuer and its keys.
type Provider struct {
	Name                string            `yaml:"name"`
	Issuer              string            `yaml:"issuer"`
	Audiences           []string          `yaml:"audiences"`
	Algorithms          []string          `yaml:"algorithms"`
	PEMFiles            []string          `yaml:"pem_files"`
	HMACSecretFile      string            `yaml:"hmac_secret_file"`
	JWKSFile            string            `yaml:"jwks_file"`
	JWKSURL             string            `yaml:"jwks_url"`
	Discovery           bool              `yaml:"discovery"`
	JWKSRefreshInterval time.Duration     `yaml:"jwks_refresh_interval"`
	Leeway              time.Duration     `yaml:"leeway"`
	ClaimsSchema        string            `yaml:"claims_schema"`
	UsernameClaim       string            `yaml:"username_claim"`
	ClaimHeaders        map[string]string `yaml:"claim_headers"`
}

// IdentityHeaders names the headers set for the upstream
// (identity_headers.*).
type IdentityHeaders struct {
	User        string `yaml:"user"`
	UserID      string `yaml:"user_id"`
	Provider    string `yaml:"provider"`
	Payload     string `yaml:"payload"`
	StripPrefix string `yaml:"strip_prefix"`
}

// Default returns the config with every default and no provider.
func Default() Config {
	return Config{
		Listen:     "127.0.0.1:9001",
		HTTPListen: "127.0.0.1:9090",
		Store:      Store{Backend: BackendBolt, Path: defaultStorePath},
		Cache:      Cache{MaxEntries: 100000},
		IdentityHeaders: IdentityHeaders{
			User:        "x-auth-user",
			UserID:      "x-auth-user-id",
			Provider:    "x-auth-provider",
			StripPrefix: "x-auth-",
		},
		ForwardAuthorization: true,
		TokenSources:         []TokenSource{{Header: "authorization", Prefix: "Bearer "}},
	}
}

// defaultStorePath is the bbolt file when store.path is not given.
const defaultStorePath = "jwtauthz.db"

func defaultEtcd() Etcd {
	return Etcd{Prefix: "/jwtauthz/", DialTimeout: 5 * time.Second}
}

// UnmarshalYAML fills store.etcd's defaults before the file's keys.
func (e *Etcd) UnmarshalYAML(n *yaml.Node) error {
	*e = defaultEtcd()
	type plain Etcd
	return n.Decode((*plain)(e))
}

func defaultProvider() Provider {
	return Provider{
		Name:                "default",
		Algorithms:          []string{"RS512"},
		JWKSRefreshInterval: time.Hour,
		Leeway:              30 * time.Second,
		UsernameClaim:       "username",
	}
}

// UnmarshalYAML fills a provider's defaults before the file's keys.
func (p *Provider) UnmarshalYAML(n *yaml.Node) error {
	*p = defaultProvider()
	type plain Provider
	return n.Decode((*plain)(p))
}

// Algorithms is every algorithm jwtauthz verifies, the values
// providers[].algorithms may name.
var Algorithms = []string{
	"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512",
}

var (
	providerNameRE = regexp.MustCompile(`^[a-z0-9-]+$`)
	headerNameRE   = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)
)

// Load reads, decodes and validates the config file at path. Every
// error names the file and the key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes and validates a config document.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, withLine(data, err)
	}
	cfg := Default()
	if len(root.Content) == 0 {
		return nil, errors.New("the file is empty: at least one provider is required")
	}
	if err := checkKeys(root.Content[0], reflect.TypeOf(cfg), ""); err != nil {
		return nil, err
	}
	if err := root.Content[0].Decode(&cfg); err != nil {
		return nil, withLine(data, explainDecode(err))
	}
	if cfg.Store.Backend == BackendEtcd && mappingValue(mappingValue(root.Content[0], "store"), "path") == nil {
		cfg.Store.Path = "" // the bbolt file's default does not apply
	}
	cfg.doc = root.Content[0]
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// checkKeys walks the document beside the config type and refuses unknown
// keys, naming their full path and line.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.AliasNode:
		return checkKeys(n.Alias, t, path)
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := fieldByTag(t, k.Value)
			key := joinPath(path, k.Value)
			if !ok {
				return fmt.Errorf("line %d: unknown key %q", k.Line, key)
			}
			if err := checkKeys(v, f.Type, key); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, e := range n.Content {
			if err := checkKeys(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Slice:
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		want := "a mapping"
		if t.Kind() == reflect.Slice {
			want = "a list"
		}
		return fmt.Errorf("line %d: %s must be %s", n.Line, orRoot(path), want)
	case n.Kind == yaml.ScalarNode:
		return checkScalar(n, t, path)
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

// checkScalar refuses a number, boolean or duration of the wrong form,
// naming its key: yaml.v3 alone names only the line, and reads 2.9 into an
// integer as 2.
func checkScalar(n *yaml.Node, t reflect.Type, path string) error {
	if n.Tag == "!!null" {
		return nil
	}
	bad := func(want string) error {
		return &KeyError{Key: path, Line: n.Line, Msg: fmt.Sprintf("must be %s, got %q", want, n.Value)}
	}
	switch {
	case t == durationType:
		if n.Tag != "!!str" {
			return bad("a duration with a unit (e.g. 30s, 1h)")
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			return bad("a duration with a unit (e.g. 30s, 1h)")
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		if n.Tag != "!!int" || n.Decode(reflect.New(t).Interface()) != nil {
			return bad(fmt.Sprintf("an integer (%s)", t.Kind()))
		}
	case t.Kind() == reflect.Bool:
		if n.Decode(new(bool)) != nil {
			return bad("true or false")
		}
	}
	return nil
}

// mappingValue returns the value of key in the mapping n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if strings.Split(f.Tag.Get("yaml"), ",")[0] == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "the document"
	}
	return path
}

// explainDecode rewrites yaml's type errors ("cannot unmarshal !!str `x`
// into time.Duration") to say what the key wants.
func explainDecode(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		m = strings.Replace(m, "into time.Duration", "into a duration (e.g. 30s, 1h)", 1)
		msgs = append(msgs, m)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Validate checks the values; every error names its key. Parse calls it;
// call it again after changing a Config (serve's flags do).
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if err := checkAddr(c.Listen, false); err != nil {
		add("listen", "%v", err)
	}
	if err := checkAddr(c.HTTPListen, true); err != nil {
		add("http_listen", "%v", err)
	}
	if err := checkAddr(c.Admin.Listen, true); err != nil {
		add("admin.listen", "%v", err)
	}
	errs = append(errs, c.Store.validate()...)
	if c.Cache.MaxEntries < 0 {
		add("cache.max_entries", "must be 0 (disabled) or more, got %d", c.Cache.MaxEntries)
	}
	if c.Cache.MaxBytes < 0 {
		add("cache.max_bytes", "must be 0 (the default, 64 MiB) or more, got %d", c.Cache.MaxBytes)
	}
	for name, v := range map[string]string{
		"identity_headers.user": c.IdentityHeaders.User, "identity_headers.user_id": c.IdentityHeaders.UserID,
		"identity_headers.provider": c.IdentityHeaders.Provider, "identity_headers.payload": c.IdentityHeaders.Payload,
	} {
		if v != "" && !headerNameRE.MatchString(v) {
			add(name, "%q is not a lowercase HTTP header name", v)
		}
	}
	if p := c.IdentityHeaders.StripPrefix; p != "" && !headerNameRE.MatchString(p) {
		add("identity_headers.strip_prefix", "%q is not a lowercase header name prefix", p)
	}
	errs = append(errs, validateTokenSources(c.TokenSources)...)
	errs = append(errs, c.validateRoutes()...)
	errs = append(errs, c.validateAdmin()...)
	if len(c.Providers) == 0 {
		add("providers", "at least one provider is required")
	}
	seen := map[string]bool{}
	noIssuer := 0
	for i := range c.Providers {
		p := &c.Providers[i]
		key := fmt.Sprintf("providers[%d]", i)
		if seen[p.Name] {
			add(key+".name", "%q is used by another provider; names must be unique", p.Name)
		}
		seen[p.Name] = true
		if p.Issuer == "" {
			noIssuer++
		}
		errs = append(errs, p.validate(key, c.identityHeaders())...)
	}
	if noIssuer > 1 {
		add("providers", "%d providers have no issuer; at most one may, since tokens are routed by issuer", noIssuer)
	}
	return withLines(c.doc, errors.Join(errs...))
}

// validate checks the store settings. The etcd password and TLS files are
// read when the store is opened (openStore), with errors named the same
// way.
func (s *Store) validate() []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	switch s.Backend {
	case BackendBolt:
		if s.Path == "" {
			add("store.path", "must name the bbolt file")
		}
		if s.Etcd != nil {
			add("store.etcd", "is set but store.backend is bolt; set store.backend: etcd, or remove store.etcd")
		}
	case BackendEtcd:
		if s.Path != "" {
			add("store.path", "names a bbolt file, but store.backend is etcd; remove store.path (and --db)")
		}
		if s.Etcd == nil {
			add("store.etcd.endpoints", "at least one endpoint is required when store.backend is etcd")
			break
		}
		errs = append(errs, s.Etcd.validate("store.etcd")...)
	default:
		add("store.backend", "%q is not bolt or etcd", s.Backend)
	}
	return errs
}

func (e *Etcd) validate(key string) []error {
	var errs []error
	add := func(k, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key + "." + k, Msg: fmt.Sprintf(format, args...)})
	}
	if len(e.Endpoints) == 0 {
		add("endpoints", "at least one endpoint is required when store.backend is etcd")
	}
	schemes := map[string]bool{}
	for i, ep := range e.Endpoints {
		k := fmt.Sprintf("endpoints[%d]", i)
		scheme, err := checkEndpoint(ep)
		if err != nil {
			add(k, "%v", err)
			continue
		}
		schemes[scheme] = true
		if scheme == "http" && e.TLS.set() {
			add(k, "%q is plain http:// but tls is set; use https://", ep)
		}
	}
	if schemes["http"] && schemes["https"] {
		add("endpoints", "mixes http:// and https://; the client uses one transport for every endpoint")
	}
	if !strings.HasSuffix(e.Prefix, "/") {
		add("prefix", "%q must end with \"/\", so that it is not the start of another prefix", e.Prefix)
	}
	if e.DialTimeout <= 0 {
		add("dial_timeout", "must be more than 0s, got %v", e.DialTimeout)
	}
	if (e.TLS.CertFile == "") != (e.TLS.KeyFile == "") {
		add("tls", "cert_file and key_file go together (a client certificate and its key)")
	}
	if e.Username != "" && e.PasswordFile == "" {
		add("password_file", "is required with username")
	}
	if e.PasswordFile != "" && e.Username == "" {
		add("username", "is required with password_file")
	}
	return errs
}

// checkEndpoint checks an etcd client URL, http(s)://host:port or
// host:port, and returns its scheme ("" for host:port).
func checkEndpoint(ep string) (scheme string, err error) {
	addr := ep
	if before, after, ok := strings.Cut(ep, "://"); ok {
		scheme, addr = before, after
		if scheme != "http" && scheme != "https" {
			return "", fmt.Errorf("%q: the scheme must be http or https", ep)
		}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil || strings.Contains(addr, "/") {
		return "", fmt.Errorf("%q is not an http(s)://host:port URL or a host:port address", ep)
	}
	return scheme, nil
}

// validate checks one provider's settings. Its files are read when the
// provider is built (buildProviders), with errors named the same way.
func (p *Provider) validate(key string, identity []string) []error {
	var errs []error
	add := func(k, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key + "." + k, Msg: fmt.Sprintf(format, args...)})
	}
	if !providerNameRE.MatchString(p.Name) {
		add("name", "%q must match [a-z0-9-]+", p.Name)
	}
	if len(p.Algorithms) == 0 {
		add("algorithms", "an allowlist of at least one algorithm is required")
	}
	hasHS, hasAsym := false, false
	for _, a := range p.Algorithms {
		switch {
		case strings.EqualFold(a, "none"):
			add("algorithms", `"none" is never allowed: unsigned tokens would be accepted`)
		case !slices.Contains(Algorithms, a):
			add("algorithms", "unknown algorithm %q (supported: %s)", a, strings.Join(Algorithms, ", "))
		case strings.HasPrefix(a, "HS"):
			hasHS = true
		default:
			hasAsym = true
		}
	}
	if hasHS && p.HMACSecretFile == "" {
		add("algorithms", "HS256/384/512 need hmac_secret_file")
	}
	if p.HMACSecretFile != "" && !hasHS {
		add("hmac_secret_file", "is set but algorithms allows no HS256/384/512")
	}
	if len(p.PEMFiles) == 0 && p.JWKSFile == "" && p.JWKSURL == "" && p.HMACSecretFile == "" && !p.Discovery {
		add("pem_files", "a provider needs keys: set pem_files, jwks_file, jwks_url, discovery or hmac_secret_file")
	}
	if (len(p.PEMFiles) > 0 || p.JWKSFile != "" || p.JWKSURL != "" || p.Discovery) && !hasAsym {
		add("algorithms", "public keys are configured but no RS/PS/ES/EdDSA algorithm is allowed")
	}
	errs = append(errs, p.validateDiscovery(key)...)
	if p.JWKSURL != "" {
		if !strings.HasPrefix(p.JWKSURL, "https://") && !strings.HasPrefix(p.JWKSURL, "http://") {
			add("jwks_url", "%q must be an http(s) URL", shownURL(p.JWKSURL))
		}
		if p.JWKSRefreshInterval < time.Second {
			add("jwks_refresh_interval", "must be at least 1s, got %v", p.JWKSRefreshInterval)
		}
	}
	if p.Leeway < 0 || p.Leeway > 5*time.Minute {
		add("leeway", "must be between 0s and 5m, got %v", p.Leeway)
	}
	if p.UsernameClaim == "" {
		add("username_claim", "must name a claim")
	}
	for h, c := range p.ClaimHeaders {
		switch {
		case !headerNameRE.MatchString(h):
			add("claim_headers", "%q is not a lowercase HTTP header name", h)
		case reservedHeaders[dashed(h)]:
			add("claim_headers."+h, "a claim may not set %s: it is a request header the upstream and Envoy rely on", h)
		case slices.Contains(identity, dashed(h)):
			add("claim_headers."+h, "is an identity header (identity_headers); a claim may not overwrite the user's identity")
		}
		if !token.ValidPath(c) {
			add("claim_headers."+h, "%q is not a claim path (names separated by dots; a name with dots in brackets)", c)
		}
	}
	return errs
}

// reservedHeaders are request headers no claim may set (compared with "_"
// read as "-"): the credential, the cookie, and the hop-by-hop and framing
// headers, whose values a token must never choose.
var reservedHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true, "host": true,
	"content-length": true, "transfer-encoding": true, "connection": true, "keep-alive": true,
	"proxy-connection": true, "proxy-authenticate": true, "te": true, "trailer": true, "upgrade": true, "expect": true,
}

// dashed reads "_" as "-" in a header name, as the servers behind Envoy do.
func dashed(name string) string { return strings.ReplaceAll(name, "_", "-") }

// cookieNameRE is an RFC 6265 cookie-name (an RFC 7230 token).
var cookieNameRE = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]+$`)

// validateTokenSources checks token_sources: at least one source, each
// exactly one of header, cookie and query, no source twice.
func validateTokenSources(srcs []TokenSource) []error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &KeyError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(srcs) == 0 {
		add("token_sources", "at least one source is required (leave the key out for the authorization Bearer header)")
	}
	seen := map[TokenSource]bool{}
	for i, src := range srcs {
		key := fmt.Sprintf("token_sources[%d]", i)
		n := 0
		for _, v := range []string{src.Header, src.Cookie, src.Query} {
			if v != "" {
				n++
			}
		}
		switch {
		case n != 1:
			add(key, "set exactly one of header, cookie and query")
		case src.Header != "" && !headerNameRE.MatchString(src.Header):
			add(key+".header", "%q is not a lowercase HTTP header name", src.Header)
		case src.Cookie != "" && !cookieNameRE.MatchString(src.Cookie):
			add(key+".cookie", "%q is not a cookie name", src.Cookie)
		case src.Query != "" && strings.ContainsAny(src.Query, "&=#? "):
			add(key+".query", "%q is not a query parameter name", src.Query)
		case src.Prefix != "" && src.Header == "":
			add(key+".prefix", "goes with header only")
		case strings.TrimSpace(src.Prefix) == "" && src.Prefix != "":
			add(key+".prefix", "%q is only white space; leave it out to take the whole header value", src.Prefix)
		case seen[src]:
			add(key, "repeats an earlier source")
		}
		seen[src] = true
	}
	return errs
}

// identityHeaders are the identity_headers names in use, "_" read as "-".
func (c *Config) identityHeaders() []string {
	var out []string
	ih := c.IdentityHeaders
	for _, h := range []string{ih.User, ih.UserID, ih.Provider, ih.Payload} {
		if h != "" {
			out = append(out, dashed(h))
		}
	}
	return out
}

// checkAddr checks a host:port listen address; "" is allowed when optional.
func checkAddr(addr string, optional bool) error {
	if addr == "" {
		if optional {
			return nil
		}
		return errors.New("must be a host:port address")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not a host:port address: %v", addr, err)
	}
	return nil
}

// RestartKeys lists the keys whose change from c to next only a restart
// can apply: the listeners, the store and tracing. A reload refuses them.
func (c *Config) RestartKeys(next *Config) []string {
	var changed []string
	if c.Listen != next.Listen {
		changed = append(changed, "listen")
	}
	if c.HTTPListen != next.HTTPListen {
		changed = append(changed, "http_listen")
	}
	if c.Admin.Listen != next.Admin.Listen {
		changed = append(changed, "admin.listen")
	}
	if !reflect.DeepEqual(c.Store, next.Store) {
		changed = append(changed, "store")
	}
	if c.Tracing != next.Tracing {
		changed = append(changed, "tracing")
	}
	return changed
}

// Files lists the files c names that a reload reads again: key files,
// JWK Set files, HMAC secrets, claims schemas.
func (c *Config) Files() []string {
	var files []string
	for _, p := range c.Providers {
		files = append(files, p.PEMFiles...)
		for _, f := range []string{p.JWKSFile, p.HMACSecretFile, p.ClaimsSchema} {
			if f != "" {
				files = append(files, f)
			}
		}
	}
	return files
}
