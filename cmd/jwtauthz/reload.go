package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jwtauthz/jwtauthz/config"
	"github.com/jwtauthz/jwtauthz/internal/fswatch"
)

// reloadDebounce is how long the watcher waits after the last change
// before it reloads: one reload for an editor's or kubelet's burst of
// events.
const reloadDebounce = time.Second

// reloadMetrics are jwtauthz_config_reloads_total{result} and
// jwtauthz_config_last_reload_success_timestamp_seconds.
type reloadMetrics struct {
	total       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	lastFailure prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jwtauthz_config_reloads_total",
			Help: "Config reloads by result (success, failure); a failed reload keeps the running config.",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jwtauthz_config_last_reload_success_timestamp_seconds",
			Help: "Unix time the running config was loaded: at start, then at each successful reload.",
		}),
		lastFailure: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jwtauthz_config_last_reload_failure_timestamp_seconds",
			Help: "Unix time of the last failed reload; 0 if none. Above the last success: the file on disk is not the config in force.",
		}),
	}
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	m.lastSuccess.SetToCurrentTime()
	reg.MustRegister(m.total, m.lastSuccess, m.lastFailure)
	return m
}

// reload reads the config file again and swaps the whole of it in, or
// nothing: providers, keys, schemas, routes, identity headers, token
// sources and admin claims are built first, then swapped atomically, so
// each Check runs on one config. A config that fails to load, or that
// changes what cannot change while running, keeps the running one.
func (s *service) reload(trigger string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	err := s.swapConfig()
	if err != nil {
		s.reloads.total.WithLabelValues("failure").Inc()
		s.reloads.lastFailure.SetToCurrentTime()
		s.logger.Error("config reload failed; keeping the running config", "trigger", trigger, "config", s.configPath, "err", err)
		return err
	}
	s.reloads.total.WithLabelValues("success").Inc()
	s.reloads.lastSuccess.SetToCurrentTime()
	s.logger.Info("config reloaded", "trigger", trigger, "config", s.configPath,
		"providers", len(s.cfg.Providers), "routes", len(s.cfg.Routes))
	return nil
}

func (s *service) swapConfig() (err error) {
	if s.configPath == "" {
		return errors.New("the service was started without a config file to reload")
	}
	if s.stopping.Err() != nil {
		return errors.New("the service is shutting down")
	}
	next, err := config.Load(s.configPath)
	if err != nil {
		return err
	}
	if s.overrides != nil {
		s.overrides(next)
		if err := next.Validate(); err != nil {
			return fmt.Errorf("config after flags: %w", err)
		}
	}
	if changed := s.cfg.RestartKeys(next); len(changed) > 0 {
		keys := strings.Join(changed, ", ")
		return fmt.Errorf("%s cannot change while jwtauthz runs: restart it to apply the new %s", keys, keys)
	}
	build := s.build
	build.Reuse = s.provs.Load()
	provs, err := config.BuildProviders(next, build)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer func() {
		if err != nil {
			provs.Retire(s.provs.Load()) // what FetchNew's fetches counted
		}
	}()
	policy, err := config.Policy(next, provs)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// A new or changed provider's keys are fetched before the swap, as
	// validate fetches them: the running config answered its tokens, and
	// the new one must not answer them 503 while a first fetch runs.
	if err := provs.FetchNew(s.stopping); err != nil {
		return fmt.Errorf("config: fetching the keys of a new or changed provider: %w", err)
	}
	if s.adminAPI != nil {
		if err := s.adminAPI.SetPolicy(config.AdminPolicy(next, provs)); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	// Nothing below fails: the new config is whole.
	s.authz.SetPolicy(policy)
	old := s.provs.Swap(provs)
	provs.Start(s.runCtx)
	old.Retire(provs)
	s.cfg = next
	return nil
}

// watch reloads when the config file or a file it names changes, until
// ctx ends (package fswatch: Kubernetes' volume updates included).
func (s *service) watch(ctx context.Context) error {
	files := func() []string {
		s.reloadMu.Lock()
		defer s.reloadMu.Unlock()
		return append([]string{s.configPath}, s.cfg.Files()...)
	}
	return fswatch.Run(ctx, files, reloadDebounce, func() { _ = s.reload("file change") }, s.logger)
}
