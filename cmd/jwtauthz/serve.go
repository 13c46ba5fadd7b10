package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/jwtauthz/jwtauthz/admin"
	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/config"
	"github.com/jwtauthz/jwtauthz/internal/logging"
	"github.com/jwtauthz/jwtauthz/internal/memlimit"
	"github.com/jwtauthz/jwtauthz/internal/tracing"
	"github.com/jwtauthz/jwtauthz/internal/version"
	"github.com/jwtauthz/jwtauthz/store"
)

// authzService is the health service name Envoy's gRPC health check of the
// cluster asks for.
const authzService = "envoy.service.auth.v3.Authorization"

func runServe(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "serve", "--config FILE [flags]")
	cfgPath := fs.String("config", "", "config file (default $JWTAUTHZ_CONFIG)")
	listen := fs.String("listen", "", "gRPC listen address (overrides listen)")
	httpListen := fs.String("http-listen", "", `HTTP listen address for /metrics /healthz /readyz (overrides http_listen; "" or "off" disables)`)
	db := fs.String("db", "", "bbolt file (overrides store.path; store.backend bolt only)")
	drain := fs.Duration("drain", 5*time.Second, "on SIGTERM, how long to report NOT_SERVING before stopping, so load balancers move away")
	logFormat := fs.String("log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), json or text")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	watch := fs.Bool("watch", true, "reload when the config file or a file it names changes (SIGHUP reloads either way)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))}
	}
	httpListenSet := false // --http-listen "" disables, as http_listen: "" does
	fs.Visit(func(f *flag.Flag) { httpListenSet = httpListenSet || f.Name == "http-listen" })
	logger, err := logging.New(env.stderr, *logFormat, *logLevel)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if err := memlimit.Set(env.getenv, logger); err != nil {
		return &exitError{code: 2, err: err}
	}
	path, err := configFlag(env, *cfgPath)
	if err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	overrides := func(cfg *config.Config) {
		if *listen != "" {
			cfg.Listen = *listen
		}
		switch {
		case *httpListen == "off":
			cfg.HTTPListen = ""
		case httpListenSet:
			cfg.HTTPListen = *httpListen
		}
		if *db != "" {
			cfg.Store.Path = *db
		}
	}
	overrides(cfg)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config after flags: %w", err)
	}

	// SIGHUP is caught from here on: its default action ends the process,
	// and one sent while the store opens is a reload once serve runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	svc, err := startService(ctx, cfg, serviceOptions{logger: logger, configPath: path, overrides: overrides, watch: *watch, getenv: env.getenv})
	if err != nil {
		return err
	}
	// Reloads run beside the wait for SIGTERM, so that one waiting on a
	// slow identity provider does not hold up the shutdown.
	go func() {
		for {
			select {
			case <-hup:
				_ = svc.reload("SIGHUP")
			case <-ctx.Done():
				return
			}
		}
	}()
	<-ctx.Done()
	logger.Info("shutting down", "drain", *drain)
	return svc.shutdown(*drain)
}

// configFlag returns the file named by --config, or by JWTAUTHZ_CONFIG.
func configFlag(env *cliEnv, path string) (string, error) {
	if path == "" {
		path = env.getenv("JWTAUTHZ_CONFIG")
	}
	if path == "" {
		return "", &exitError{code: 2, err: errors.New("no config file: pass --config FILE or set JWTAUTHZ_CONFIG")}
	}
	return path, nil
}

// loadConfigFlag loads the file named by --config, or by JWTAUTHZ_CONFIG.
func loadConfigFlag(env *cliEnv, path string) (*config.Config, error) {
	path, err := configFlag(env, path)
	if err != nil {
		return nil, err
	}
	return config.Load(path)
}

type serviceOptions struct {
	logger     *slog.Logger
	now        func() time.Time // default time.Now
	httpClient *http.Client     // for JWKS fetches; default one with a timeout
	// configPath is the file the config came from, read again on reload;
	// "" when the caller built the config itself (no reload).
	configPath string
	// overrides applies serve's flags to a config, the loaded one and
	// every reloaded one.
	overrides func(*config.Config)
	// watch reloads when the config file or a file it names changes.
	watch bool
	// readyGrace is how long health waits for every provider's keys before
	// it turns SERVING with at least one provider's; default readyGrace.
	readyGrace time.Duration
	// httpTimeout bounds reading a request of http_listen and keeping an
	// idle connection; default httpTimeout.
	httpTimeout time.Duration
	// getenv reads the OTEL_* variables; default: none set.
	getenv func(string) string
}

// http_listen serves /metrics, /healthz and /readyz: a scraper and probes,
// a few connections that each send a small request. Every connection is
// bounded in time and their number is bounded, so idle or slow clients
// cannot hold goroutines and file descriptors.
const (
	httpTimeout   = 10 * time.Second
	maxHTTPConns  = 64
	maxHTTPHeader = 16 << 10
)

func newHTTPServer(h http.Handler, timeout time.Duration) *http.Server {
	if timeout <= 0 {
		timeout = httpTimeout
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: timeout / 2,
		ReadTimeout:       timeout,
		WriteTimeout:      3 * timeout, // a large /metrics on a slow scraper
		IdleTimeout:       timeout,
		MaxHeaderBytes:    maxHTTPHeader,
	}
}

// readyGrace: at start, health turns SERVING when every provider has
// keys, or after this long when at least one has, so one identity
// provider that is down at start does not keep out the users of the
// others (its tokens get 503 keys_unavailable until its keys load).
const readyGrace = 10 * time.Second

// service is a running jwtauthz: store, providers, gRPC and HTTP servers.
type service struct {
	logger    *slog.Logger
	store     *store.Engine
	authz     *authz.Server
	adminAPI  *admin.Server // nil when admin.listen is ""
	provs     atomic.Pointer[config.Providers]
	build     config.BuildOptions
	grpc      *grpc.Server
	health    *health.Server
	http      *http.Server
	grpcAddr  net.Addr
	httpAddr  net.Addr     // nil when disabled
	admin     *grpc.Server // the admin API's server; nil when admin.listen is ""
	adminAddr net.Addr     // nil when disabled
	runCtx    context.Context
	cancel    context.CancelFunc
	done      chan struct{} // closed when the gRPC server has stopped
	// stopping ends when shutdown begins (or serve's context ends): a
	// reload in progress stops fetching, and none starts.
	stopping context.Context
	stop     context.CancelFunc

	// The config in force and how to read the next one; reloadMu
	// serialises reloads.
	reloadMu   sync.Mutex
	cfg        *config.Config
	configPath string
	overrides  func(*config.Config)
	reloads    *reloadMetrics
	tracer     *sdktrace.TracerProvider // nil when tracing is off
	unwritten  prometheus.Counter       // logins whose counts a shutdown could not write
}

// authzOptions are the Check server's options: tracing only when on, so
// that off costs nothing.
func authzOptions(db *store.Engine, o serviceOptions, m *authz.Metrics, tracer trace.Tracer) authz.Options {
	opts := authz.Options{Users: db, Now: o.now, Logger: o.logger, Metrics: m}
	if tracer != nil {
		opts.Tracer, opts.Propagator = tracer, tracing.Propagator()
	}
	return opts
}

// startService opens the store, builds the providers and starts listening.
// It returns once the listeners are bound; health turns SERVING when the
// store was reached and the providers have keys (see readyGrace).
func startService(ctx context.Context, cfg *config.Config, o serviceOptions) (svc *service, err error) {
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.readyGrace <= 0 {
		o.readyGrace = readyGrace
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := authz.NewMetrics(reg)
	v := version.Get()
	reg.MustRegister(authz.BuildInfo(v.Version, v.Revision, v.GoVersion))

	if o.getenv == nil {
		o.getenv = func(string) string { return "" }
	}
	var tp *sdktrace.TracerProvider
	var tracer trace.Tracer
	if tracing.Enabled(cfg.Tracing.Enabled, o.getenv) {
		if tp, err = tracing.New(ctx, o.getenv); err != nil {
			return nil, err
		}
		tracer = tp.Tracer("github.com/jwtauthz/jwtauthz")
		defer func() {
			if err != nil {
				_ = tp.Shutdown(context.Background())
			}
		}()
	}
	build := config.BuildOptions{Now: o.now, Logger: o.logger, Metrics: metrics, HTTPClient: o.httpClient, Tracer: tracer}
	provs, err := config.BuildProviders(cfg, build)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	policy, err := config.Policy(cfg, provs)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	db, err := config.OpenStore(cfg, o.logger)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen (gRPC) %s: %w", cfg.Listen, err)
	}
	var httpLis net.Listener
	if cfg.HTTPListen != "" {
		if httpLis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
			lis.Close()
			return nil, fmt.Errorf("http_listen %s: %w", cfg.HTTPListen, err)
		}
	}

	adminAPI, adminSrv, adminAddr, err := startAdmin(cfg, config.AdminPolicy(cfg, provs), db, o.logger)
	if err != nil {
		lis.Close()
		if httpLis != nil {
			httpLis.Close()
		}
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopping, stop := context.WithCancel(ctx)
	svc = &service{
		stopping:   stopping,
		stop:       stop,
		logger:     o.logger,
		store:      db,
		authz:      authz.New(authzOptions(db, o, metrics, tracer), policy),
		tracer:     tp,
		adminAPI:   adminAPI,
		build:      build,
		grpc:       grpc.NewServer(),
		health:     health.NewServer(),
		grpcAddr:   lis.Addr(),
		admin:      adminSrv,
		adminAddr:  adminAddr,
		runCtx:     runCtx,
		cancel:     cancel,
		done:       make(chan struct{}),
		cfg:        cfg,
		configPath: o.configPath,
		overrides:  o.overrides,
		reloads:    newReloadMetrics(reg),
		unwritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jwtauthz_store_unwritten_logins_total",
			Help: "Logins whose last_login and login_count could not be written at shutdown (the store was unreachable).",
		}),
	}
	reg.MustRegister(svc.unwritten)
	svc.provs.Store(provs)
	authv3.RegisterAuthorizationServer(svc.grpc, svc.authz)
	healthpb.RegisterHealthServer(svc.grpc, svc.health)
	reflection.Register(svc.grpc)
	svc.setServing(false)
	reg.MustRegister(authz.ServingGauge(svc.serving))

	provs.Start(runCtx)
	go svc.watchReady(runCtx, o.readyGrace)
	if o.watch && o.configPath != "" {
		go func() {
			if err := svc.watch(runCtx); err != nil {
				o.logger.Error("config watch stopped; reload with SIGHUP", "err", err)
			}
		}()
	}
	go func() {
		defer close(svc.done)
		if err := svc.grpc.Serve(lis); err != nil {
			o.logger.Error("gRPC server stopped", "err", err)
		}
	}()
	if httpLis != nil {
		svc.httpAddr = httpLis.Addr()
		svc.http = newHTTPServer(svc.httpHandler(reg), o.httpTimeout)
		go func() {
			if err := svc.http.Serve(netutil.LimitListener(httpLis, maxHTTPConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.logger.Error("HTTP server stopped", "err", err)
			}
		}()
	}
	o.logger.Info("jwtauthz serving", "grpc", svc.grpcAddr.String(), "http", addrString(svc.httpAddr), "admin", addrString(svc.adminAddr),
		"store", cfg.Store.String(), "providers", len(cfg.Providers), "routes", len(cfg.Routes), "version", v.Version)
	return svc, nil
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

// watchReady turns health SERVING once the store was reached and every
// provider has keys, or, after grace, at least one has. It stays SERVING
// until shutdown: a failed refresh keeps the last good keys, known users
// are served from memory while etcd is unreachable, and a reload that adds
// a provider whose keys have not loaded yet answers that provider's
// tokens 503 without taking the others out of the mesh.
func (s *service) watchReady(ctx context.Context, grace time.Duration) {
	start := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		loaded, total := s.provs.Load().Loaded()
		switch {
		case !s.store.Ready():
		case loaded == total:
			s.setServing(true)
			s.logger.Info("ready: every provider has keys and the store is loaded")
			return
		case loaded > 0 && time.Since(start) >= grace:
			s.setServing(true)
			s.logger.Warn("ready without every provider's keys: their tokens get 503 keys_unavailable until the keys load",
				"providers_with_keys", loaded, "providers", total, "grace", grace)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *service) setServing(ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(authzService, st)
}

func (s *service) serving() bool {
	resp, err := s.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: authzService})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

func (s *service) httpHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.serving() {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// closeStore flushes and closes the store. Counts that cannot be written
// (etcd unreachable at shutdown) are lost: that is logged and counted, not
// a failed shutdown, since every user and deactivation is already durable
// and a stuck store must not keep a draining pod from exiting.
func (s *service) closeStore() error {
	err := s.store.Close()
	var fe *store.FlushError
	if errors.As(err, &fe) && err == error(fe) {
		s.unwritten.Add(float64(fe.Logins))
		s.logger.Warn("store unreachable at shutdown: login counts not written", "users", fe.Users, "logins", fe.Logins, "err", fe.Err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// shutdown reports NOT_SERVING, keeps answering for the drain period so
// Envoy and Kubernetes stop sending, stops gracefully, then flushes and
// closes the store.
func (s *service) shutdown(drain time.Duration) error {
	s.stop()
	s.health.Shutdown() // every service NOT_SERVING, and it stays so
	if drain > 0 {
		time.Sleep(drain)
	}
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		s.logger.Warn("graceful stop timed out; closing open connections")
		s.grpc.Stop()
	}
	<-s.done
	stopAdmin(s.admin, 5*time.Second) // before the store it reads closes
	s.cancel()                        // the watcher, readiness and the key refresh loops
	s.reloadMu.Lock()
	s.provs.Load().Retire(nil) // waits for the refresh loops
	s.reloadMu.Unlock()
	err := s.closeStore()
	// The HTTP listener last, so a final scrape sees the store's outcome.
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.http.Shutdown(ctx)
		cancel()
	}
	if s.tracer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.tracer.Shutdown(ctx); err != nil {
			s.logger.Warn("tracing: spans not exported at shutdown", "err", err)
		}
		cancel()
	}
	if err != nil {
		return err
	}
	s.logger.Info("stopped")
	return nil
}
