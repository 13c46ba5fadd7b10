//go:build deploy

package deploy_test

import (
	"strings"
	"testing"
)

// TestNotesKeys renders NOTES.txt for several value sets and checks that
// it describes the keys actually configured: each provider's algorithms
// and key sources, the Secret or ConfigMap it mounts and the files they
// must hold, and no Secret when none is mounted.
func TestNotesKeys(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		set     []string
		want    []string
		wantNot []string
	}{
		{
			name: "default values",
			want: []string{
				"default (RS512): PEM file public.pem",
				"The pod mounts Secret \"jwtauthz-keys\" at /etc/jwtauthz/keys\n   and waits for it to exist. It must hold public.pem",
				"kubectl -n jwtauthz create secret generic jwtauthz-keys \\\n       --from-file=public.pem=./public.pem",
			},
			wantNot: []string{"jwks_url", "JWK Set", "Routes,"},
		},
		{
			name:   "JWKS URL",
			values: []string{"ci/jwks-url-values.yaml"},
			want: []string{
				"keycloak (RS256, ES256): JWK Set from https://sso.example.com/realms/main/protocol/openid-connect/certs, refreshed every 15m",
				"No provider reads a key file, so no key Secret is mounted.",
			},
			wantNot: []string{"RS512", "public.pem", "create secret", "jwtauthz-keys"},
		},
		{
			name:   "discovery and routes",
			values: []string{"ci/routes-values.yaml"},
			want: []string{
				"keycloak (RS256): OpenID Connect discovery at https://sso.example.com/realms/main/.well-known/openid-configuration, refreshed every 15m",
				"no key Secret is mounted",
				"Routes, first match wins: health, billing, orders-read, orders-write, admin, reports (dry run);\n   then default_route (auth required).",
			},
			wantNot: []string{"create secret", "public.pem"},
		},
		{
			name:   "Secret and ConfigMap",
			values: []string{"ci/pem-secret-values.yaml"},
			want: []string{
				"default (RS512): PEM files public.pem, public-next.pem; claims schema schema.json",
				"partner (ES256): JWK Set file partner-jwks.json",
				"The pod mounts Secret \"idp-keys\" and ConfigMap \"partner-keys\" at /etc/jwtauthz/keys\n   and waits for both to exist. Between them they must hold public.pem, public-next.pem, schema.json, partner-jwks.json.\n",
			},
			wantNot: []string{"create secret", "create configmap"},
		},
		{
			name:    "a ConfigMap only",
			set:     []string{"keys.secretName=", "keys.configMapName=idp-public-keys"},
			want:    []string{"The pod mounts ConfigMap \"idp-public-keys\" at /etc/jwtauthz/keys", "kubectl -n jwtauthz create configmap idp-public-keys \\\n       --from-file=public.pem=./public.pem"},
			wantNot: []string{"create secret"},
		},
		{
			name:   "a Secret named though no file is read",
			values: []string{"ci/jwks-url-values.yaml"},
			set:    []string{"keys.secretName=idp-extra"},
			want:   []string{"nothing is needed from\n   Secret \"idp-extra\", mounted at /etc/jwtauthz/keys as you asked"},
		},
		{
			name:   "headless Service",
			values: []string{"ci/etcd-values.yaml"},
			want:   []string{"every pod:       jwtauthz-headless.jwtauthz.svc.cluster.local:9001 (headless, for Envoy's STRICT_DNS)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			notes := renderNotes(t, tt.values, tt.set...)
			for _, w := range tt.want {
				if !strings.Contains(notes, w) {
					t.Errorf("NOTES lacks %q:\n%s", w, notes)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(notes, w) {
					t.Errorf("NOTES mentions %q, which these values do not configure:\n%s", w, notes)
				}
			}
		})
	}
}
