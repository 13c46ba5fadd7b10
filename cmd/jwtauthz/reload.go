package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jwtauthz/jwtauthz/config"
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

func (s *service) swapConfig() error {
	if s.configPath == "" {
		return errors.New("the service was started without a config file to reload")
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
	if err := fixedKeysUnchanged(s.cfg, next); err != nil {
		return err
	}
	build := s.build
	build.Reuse = s.provs.Load()
	provs, err := config.BuildProviders(next, build)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	policy, err := config.Policy(next, provs)
	if err != nil {
		return fmt.Errorf("config: %w", err)
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

// fixedKeysUnchanged refuses a reload that changes what only a restart
// can: the listeners, the store and tracing.
func fixedKeysUnchanged(cur, next *config.Config) error {
	var changed []string
	if cur.Listen != next.Listen {
		changed = append(changed, "listen")
	}
	if cur.HTTPListen != next.HTTPListen {
		changed = append(changed, "http_listen")
	}
	if cur.Admin.Listen != next.Admin.Listen {
		changed = append(changed, "admin.listen")
	}
	if !reflect.DeepEqual(cur.Store, next.Store) {
		changed = append(changed, "store")
	}
	if cur.Tracing != next.Tracing {
		changed = append(changed, "tracing")
	}
	if len(changed) > 0 {
		return fmt.Errorf("%s cannot change while jwtauthz runs: restart it to apply the new %s", strings.Join(changed, ", "), strings.Join(changed, ", "))
	}
	return nil
}

// watchedFiles is the config file and every file it names that a reload
// reads again: key files, JWK Sets, HMAC secrets, claims schemas.
func watchedFiles(configPath string, cfg *config.Config) []string {
	files := []string{configPath}
	for _, p := range cfg.Providers {
		files = append(files, p.PEMFiles...)
		for _, f := range []string{p.JWKSFile, p.HMACSecretFile, p.ClaimsSchema} {
			if f != "" {
				files = append(files, f)
			}
		}
	}
	return files
}

// watch reloads when a watched file changes, until ctx ends. It watches
// the files' directories, not the files: editors replace a file by
// renaming another over it, and the kubelet updates a ConfigMap or Secret
// volume by renaming a new ..data symlink over the old one; both are
// events in the directory. Events are debounced; after each reload the
// directories are those of the new config.
func (s *service) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch config: %w", err)
	}
	defer w.Close()
	names := s.rewatch(w, nil)
	var fire <-chan time.Time
	var timer *time.Timer
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !relevant(ev, names) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(reloadDebounce)
			} else {
				timer.Reset(reloadDebounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.logger.Warn("config watch", "err", err)
		case <-fire:
			fire = nil
			_ = s.reload("file change")
			names = s.rewatch(w, names)
		}
	}
}

// rewatch makes w watch the directories of the current config's files and
// returns their base names; old is the previous set.
func (s *service) rewatch(w *fsnotify.Watcher, old map[string]bool) map[string]bool {
	s.reloadMu.Lock()
	files := watchedFiles(s.configPath, s.cfg)
	s.reloadMu.Unlock()
	dirs := map[string]bool{}
	names := map[string]bool{}
	for _, f := range files {
		dirs[filepath.Dir(f)] = true
		names[filepath.Base(f)] = true
	}
	for _, d := range w.WatchList() {
		if !dirs[d] {
			_ = w.Remove(d)
		}
	}
	for d := range dirs {
		if err := w.Add(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.logger.Warn("config watch: cannot watch a directory; changes there need SIGHUP", "dir", d, "err", err)
		}
	}
	return names
}

// relevant reports whether ev may change a watched file: an event on one
// of their names, or on kubelet's ..data links and timestamped
// directories, which every file of such a volume resolves through.
func relevant(ev fsnotify.Event, names map[string]bool) bool {
	base := filepath.Base(ev.Name)
	return names[base] || strings.HasPrefix(base, "..")
}
