package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/jwtauthz/jwtauthz/store"
	"github.com/jwtauthz/jwtauthz/store/bolt"
	"github.com/jwtauthz/jwtauthz/store/etcd"
)

// OpenStore opens the configured backend. The bbolt file is opened at
// once; etcd is reached in the background, so that jwtauthz starts, and
// reports NOT_SERVING (Engine.Ready), while etcd is down.
func OpenStore(cfg *Config, logger *slog.Logger) (*store.Engine, error) {
	if cfg.Store.Backend != BackendEtcd {
		return bolt.Open(bolt.Options{Path: cfg.Store.Path, Logger: logger})
	}
	opts, err := EtcdOptions(cfg.Store.Etcd)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	opts.Logger = logger
	s, err := etcd.Open(opts)
	if err != nil {
		return nil, err
	}
	return s.Engine, nil
}

// EtcdOptions reads the files store.etcd names; errors name the key.
func EtcdOptions(c *Etcd) (etcd.Options, error) {
	opts := etcd.Options{
		Endpoints:   c.Endpoints,
		Prefix:      c.Prefix,
		DialTimeout: c.DialTimeout,
		// One bound for connecting and for each request: a Check that
		// must create a user never waits longer on etcd.
		RequestTimeout: c.DialTimeout,
		Username:       c.Username,
	}
	if c.PasswordFile != "" {
		b, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return opts, fmt.Errorf("store.etcd.password_file: %w", err)
		}
		// Files written by echo or an editor end with a newline; the
		// password does not.
		if opts.Password = strings.TrimRight(string(b), "\r\n"); opts.Password == "" {
			return opts, fmt.Errorf("store.etcd.password_file: %s is empty", c.PasswordFile)
		}
	}
	https := false
	for _, ep := range c.Endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if !https && !c.TLS.set() {
		return opts, nil
	}
	opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12} // system roots unless ca_file
	if f := c.TLS.CAFile; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return opts, fmt.Errorf("store.etcd.tls.ca_file: %w", err)
		}
		opts.TLS.RootCAs = x509.NewCertPool()
		if !opts.TLS.RootCAs.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("store.etcd.tls.ca_file: no PEM certificate in %s", f)
		}
	}
	if c.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return opts, fmt.Errorf("store.etcd.tls.cert_file, key_file: %w", err)
		}
		opts.TLS.Certificates = []tls.Certificate{cert}
	}
	return opts, nil
}

// String describes the store for a log line: the bbolt file, or etcd's
// endpoints and prefix.
func (s *Store) String() string {
	if s.Backend == BackendEtcd && s.Etcd != nil {
		return fmt.Sprintf("etcd %s prefix %s", strings.Join(s.Etcd.Endpoints, ","), s.Etcd.Prefix)
	}
	return s.Path
}
