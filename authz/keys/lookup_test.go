package keys_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/internal/testlog"
)

// TestKIDRule: Envoy's rule through a real verifier. A token without a kid
// verifies against a set whose keys all carry kids; a token whose kid names
// one key is never tried against another kid's key, even the one that
// signed it; an unknown kid falls back to kid-less keys only.
func TestKIDRule(t *testing.T) {
	signer, other, kidless := generate(t, "RS256"), generate(t, "RS256"), generate(t, "RS256")
	set := keys.NewSet([]keys.Key{
		{ID: "k-other", Public: other.Public()},
		{ID: "k-signer", Alg: "RS256", Public: signer.Public()},
	}, 1)
	withKIDless := keys.NewSet([]keys.Key{
		{ID: "k-other", Public: other.Public()},
		{ID: "k-signer", Public: signer.Public()},
		{Public: kidless.Public()},
	}, 1)
	for _, tc := range []struct {
		name    string
		set     *keys.Set
		signer  crypto.Signer
		alg     string
		header  map[string]any
		wantErr error
	}{
		{"no kid, every key with a kid: allowed", set, signer, "RS256", nil, nil},
		{"no kid, a kid-less key first, then the others: allowed", withKIDless, signer, "RS256", nil, nil},
		{"no kid, signed by the kid-less key: allowed", withKIDless, kidless, "RS256", nil, nil},
		{"no kid, RS384: the key whose JWK alg is RS256 is not tried", set, signer, "RS384", nil, token.ErrSignature},
		{"its own kid: allowed", set, signer, "RS256", map[string]any{"kid": "k-signer"}, nil},
		{"another key's kid: never tried against the signer's key", set, signer, "RS256", map[string]any{"kid": "k-other"}, token.ErrSignature},
		{"an unknown kid, no kid-less key: no candidate", set, signer, "RS256", map[string]any{"kid": "k-new"}, keys.ErrUnknownKID},
		{"an unknown kid: kid-less keys only, not the signer's", withKIDless, signer, "RS256", map[string]any{"kid": "k-new"}, token.ErrSignature},
		{"an unknown kid, signed by the kid-less key: allowed", withKIDless, kidless, "RS256", map[string]any{"kid": "k-new"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := verifier(keys.NewStatic(tc.set), "RS256", "RS384")
			_, err := v.Verify(context.Background(), mint(t, tc.signer, tc.alg, tc.header, nil))
			if (tc.wantErr == nil && err != nil) || !errors.Is(err, tc.wantErr) {
				t.Errorf("Verify: %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestCandidatesBoundedAndLogged: a JWK Set of 2,000 keys sharing one kid
// costs at most 8 signature checks per token (the signer, last in the set,
// is never reached), and the cut is logged with how many were left out,
// once a minute at most, never with the token. The same for a kid-less
// token before 20 keys with kids, from a static source.
func TestCandidatesBoundedAndLogged(t *testing.T) {
	signer, other := generate(t, "ES256"), generate(t, "ES256")
	var members []map[string]any
	var static []keys.Key
	for i := range 1999 {
		members = append(members, jwk(t, other, map[string]any{"kid": "one"}))
		if i < 19 {
			static = append(static, keys.Key{ID: fmt.Sprint("k", i), Public: other.Public()})
		}
	}
	members = append(members, jwk(t, signer, map[string]any{"kid": "one"}))
	static = append(static, keys.Key{ID: "k19", Public: signer.Public()})
	p := newIDP(t)
	p.set("/jwks", page{body: jwks(t, members...)})

	for _, tc := range []struct {
		name     string
		source   func(*slog.Logger) token.KeySource
		kid      string
		leftOut  int
		checkKID string
	}{
		{"JWKS URL, 2,000 keys with one kid", func(l *slog.Logger) token.KeySource {
			r := keys.NewRemote(keys.RemoteOptions{URL: p.URL + "/jwks", Logger: l})
			mustRefresh(t, r)
			return r
		}, "one", 1992, `"kid":"\"one\""`},
		{"static keys, a kid-less token before 20 keys with kids", func(l *slog.Logger) token.KeySource {
			return keys.NewStatic(keys.NewSet(static, 1)).WithLogger(l)
		}, "", 12, `"kid":"\"\""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf testlog.Buffer
			src := tc.source(slog.New(slog.NewJSONHandler(&buf, nil)))
			if n := src.Current().Len(); n != 2000 && n != 20 {
				t.Fatalf("set of %d keys", n)
			}
			dst, _, err := src.Lookup(context.Background(), nil, tc.kid, "ES256")
			if err != nil || len(dst) != keys.MaxCandidates {
				t.Fatalf("Lookup: %d candidates, %v; want %d", len(dst), err, keys.MaxCandidates)
			}
			v := verifier(src, "ES256")
			var header map[string]any
			if tc.kid != "" {
				header = map[string]any{"kid": tc.kid}
			}
			tok := mint(t, signer, "ES256", header, nil)
			for range 3 {
				if _, err := v.Verify(context.Background(), tok); !errors.Is(err, token.ErrSignature) {
					t.Fatalf("Verify: %v, want ErrSignature: the signer is past the first %d candidates", err, keys.MaxCandidates)
				}
			}
			logged := buf.String()
			if n := strings.Count(logged, `"left_out"`); n != 1 {
				t.Errorf("%d log lines about the cut after 4 lookups, want 1 (at most once a minute):\n%s", n, logged)
			}
			if want := fmt.Sprintf(`"tried":8,"left_out":%d`, tc.leftOut); !strings.Contains(logged, want) || !strings.Contains(logged, tc.checkKID) {
				t.Errorf("log %s\nwant %s and %s", logged, want, tc.checkKID)
			}
			for i, part := range strings.Split(tok, ".") {
				if strings.Contains(logged, part) {
					t.Errorf("the log holds segment %d of the token", i)
				}
			}
		})
	}
}
