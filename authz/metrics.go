package authz

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are jwtauthz's Prometheus metrics. Labels are bounded: provider
// and route names come from the config, decisions and reasons from fixed
// lists.
type Metrics struct {
	checks       *prometheus.CounterVec
	duration     prometheus.Histogram
	usersCreated prometheus.Counter
	jwksRefresh  *prometheus.CounterVec
	jwksSuccess  *prometheus.GaugeVec
	jwksInterval *prometheus.GaugeVec
	cache        *prometheus.CounterVec
	cacheHit     prometheus.Counter
	cacheMiss    prometheus.Counter
	// checks' counter of each label combination met so far, so that a
	// Check does not hash its labels into the vector every time. The
	// labels are bounded, and so is the map.
	countersMu sync.RWMutex
	counters   map[checkLabels]prometheus.Counter
}

// checkLabels are jwtauthz_checks_total's labels.
type checkLabels struct {
	provider, route, decision, reason string
}

// checkCounter returns the counter of jwtauthz_checks_total for l.
func (m *Metrics) checkCounter(l checkLabels) prometheus.Counter {
	m.countersMu.RLock()
	c, ok := m.counters[l]
	m.countersMu.RUnlock()
	if ok {
		return c
	}
	c = m.checks.WithLabelValues(l.provider, l.route, l.decision, l.reason)
	m.countersMu.Lock()
	m.counters[l] = c
	m.countersMu.Unlock()
	return c
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		counters: make(map[checkLabels]prometheus.Counter),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jwtauthz_checks_total",
			Help: "Check decisions by provider, route, decision (allow, deny, dry_run_deny) and reason.",
		}, []string{"provider", "route", "decision", "reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "jwtauthz_check_duration_seconds",
			Help:    "Time to answer a Check, from request to decision.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		usersCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jwtauthz_users_created_total",
			Help: "Users created on their first allowed Check.",
		}),
		jwksRefresh: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jwtauthz_jwks_refresh_total",
			Help: "JWK Set fetches by provider and result (success, failure).",
		}, []string{"provider", "result"}),
		jwksSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jwtauthz_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful JWK Set (or discovery) fetch, by provider; alert when it is older than twice the refresh interval.",
		}, []string{"provider"}),
		jwksInterval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jwtauthz_jwks_refresh_interval_seconds",
			Help: "The configured JWK Set refresh interval, by provider: keys are stale once the last success is older than twice it.",
		}, []string{"provider"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jwtauthz_token_cache_requests_total",
			Help: "Verified-token cache lookups by result (hit, miss).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.checks, m.duration, m.usersCreated, m.jwksRefresh, m.jwksSuccess, m.jwksInterval, m.cache)
	m.cacheHit, m.cacheMiss = m.cache.WithLabelValues("hit"), m.cache.WithLabelValues("miss")
	return m
}

// JWKSRefreshed counts one JWK Set fetch of provider.
func (m *Metrics) JWKSRefreshed(provider string, err error) {
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "failure"
	} else {
		m.jwksSuccess.WithLabelValues(provider).SetToCurrentTime()
	}
	m.jwksRefresh.WithLabelValues(provider, result).Inc()
}

// JWKSProvider announces a provider whose keys come from a URL, refreshed
// every interval. Until its first successful fetch, its last-success
// timestamp is 0, so a set that never loads is as stale as can be.
func (m *Metrics) JWKSProvider(provider string, interval time.Duration) {
	if m == nil {
		return
	}
	m.jwksInterval.WithLabelValues(provider).Set(interval.Seconds())
	m.jwksSuccess.WithLabelValues(provider).Add(0)
}

// JWKSForget drops the JWKS freshness series of a provider whose keys are
// no longer fetched (a reload removed it, or gave it static keys only), so
// that no alert watches keys nobody uses.
func (m *Metrics) JWKSForget(provider string) {
	if m == nil {
		return
	}
	m.jwksInterval.DeleteLabelValues(provider)
	m.jwksSuccess.DeleteLabelValues(provider)
}

// ProviderAdded starts a provider's fetch counts at 0, so that
// jwtauthz_jwks_refresh_total has a series for every provider, static
// ones included (they never fetch).
func (m *Metrics) ProviderAdded(provider string) {
	if m == nil {
		return
	}
	m.jwksRefresh.WithLabelValues(provider, "success").Add(0)
	m.jwksRefresh.WithLabelValues(provider, "failure").Add(0)
}

// ProviderRemoved drops every JWKS series of a provider a reload removed.
func (m *Metrics) ProviderRemoved(provider string) {
	if m == nil {
		return
	}
	m.JWKSForget(provider)
	m.jwksRefresh.DeleteLabelValues(provider, "success")
	m.jwksRefresh.DeleteLabelValues(provider, "failure")
}

// CacheRequests returns the cache counter for result (hit or miss).
func (m *Metrics) CacheRequests(result string) prometheus.Counter {
	return m.cache.WithLabelValues(result)
}

// CacheLookup counts one verified-token cache lookup.
func (m *Metrics) CacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.cacheHit.Inc()
		return
	}
	m.cacheMiss.Inc()
}

// ServingGauge reports jwtauthz_serving: 1 while the service's health is
// SERVING, 0 while it is not (starting without keys or store, or draining),
// so an alert needs no other exporter.
func ServingGauge(serving func() bool) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jwtauthz_serving",
		Help: "1 while grpc.health.v1 reports SERVING for envoy.service.auth.v3.Authorization, else 0.",
	}, func() float64 {
		if serving() {
			return 1
		}
		return 0
	})
}

// BuildInfo reports jwtauthz_build_info: always 1, its labels the
// version, VCS revision and Go version of the binary.
func BuildInfo(version, revision, goVersion string) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jwtauthz_build_info",
		Help: "1, labelled with the version, VCS revision and Go version jwtauthz was built with.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(version, revision, goVersion).Set(1)
	return g
}
