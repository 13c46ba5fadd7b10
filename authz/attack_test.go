package authz_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jwtauthz/jwtauthz/authz"
	"github.com/jwtauthz/jwtauthz/authz/keys"
	"github.com/jwtauthz/jwtauthz/authz/token"
	"github.com/jwtauthz/jwtauthz/store/bolt"
)

// attackTarget is a Check server with gRPC health, as serve runs it, over
// bufconn; its verifier trusts one RSA key (RS256) and one HMAC secret
// (HS256), so algorithm confusion has both kinds of key to aim at.
type attackTarget struct {
	check  authv3.AuthorizationClient
	health healthpb.HealthClient
}

func startAttackTarget(t *testing.T, key *rsa.PrivateKey, secret []byte) *attackTarget {
	t.Helper()
	db, err := bolt.Open(bolt.Options{Path: t.TempDir() + "/users.db"})
	if err != nil {
		t.Fatal(err)
	}
	src := keys.NewStatic(keys.NewSet([]keys.Key{{Public: &key.PublicKey}, {Public: secret}}, 1))
	srv := authz.New(authz.Options{Users: db, Now: func() time.Time { return now }}, &authz.Policy{
		Verifier:        singleProvider(t, token.Options{Algorithms: []string{"RS256", "HS256"}, Audiences: []string{"api"}}, src),
		Headers:         identityHeaders(),
		CacheMaxEntries: 1000,
	})
	hs := health.NewServer()
	conn := serveBufconn(t, func(gs *grpc.Server) {
		authv3.RegisterAuthorizationServer(gs, srv)
		healthpb.RegisterHealthServer(gs, hs)
	})
	t.Cleanup(func() { db.Close() })
	return &attackTarget{check: authv3.NewAuthorizationClient(conn), health: healthpb.NewHealthClient(conn)}
}

// raw assembles a token from a header and a payload given as JSON text,
// signed with HS256 under secret (or with sig when it is not nil).
func raw(header, payload string, secret []byte, sig []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(header)) + "." + enc([]byte(payload))
	if sig == nil {
		sig, _ = jwt.SigningMethodHS256.Sign(signing, secret)
	}
	return signing + "." + enc(sig)
}

func TestAttacks(t *testing.T) {
	key := rsaKey(t)
	attacker := rsaKey(t)
	secret := []byte(strings.Repeat("k", 32))
	target := startAttackTarget(t, key, secret)

	pubPEM := publicPEM(t, &key.PublicKey)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	valid := func() jwt.MapClaims { c := claimsFor("victim"); c["aud"] = "api"; return c }
	with := func(extra map[string]any) jwt.MapClaims {
		c := valid()
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	rs := func(c jwt.MapClaims, header map[string]any) string {
		return mint(t, jwt.SigningMethodRS256, key, c, header)
	}
	good := rs(valid(), nil)
	goodParts := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	exp := now.Add(time.Hour).Unix()
	payload := func(extra string) string {
		return fmt.Sprintf(`{"username":"victim","aud":"api","exp":%d%s}`, exp, extra)
	}
	attackerJWK, _ := json.Marshal(rsaJWK("evil", &attacker.PublicKey))
	var attackerJWKMap map[string]any
	json.Unmarshal(attackerJWK, &attackerJWKMap)
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	manyEntries := make(map[string]any, 1000)
	for i := range 1000 {
		manyEntries[fmt.Sprintf("h%d", i)] = i
	}
	manyEntries["alg"] = "RS256"
	bigHeader, _ := json.Marshal(manyEntries)

	tests := []struct {
		name   string
		token  string
		reason authz.Reason
	}{
		// alg none in every spelling
		{"alg none", raw(`{"alg":"none","typ":"JWT"}`, payload(""), nil, []byte{}), authz.ReasonAlgorithm},
		{"alg None", raw(`{"alg":"None"}`, payload(""), nil, []byte("x")), authz.ReasonAlgorithm},
		{"alg NONE", raw(`{"alg":"NONE"}`, payload(""), nil, []byte("x")), authz.ReasonAlgorithm},
		{"alg none with the real signature kept", enc([]byte(`{"alg":"none"}`)) + "." + goodParts[1] + "." + goodParts[2], authz.ReasonAlgorithm},
		// HMAC keyed with the RSA public key: HS256 is allowed here, but only
		// the HMAC secret is ever used for it.
		{"HS256 keyed with the public key PEM", mint(t, jwt.SigningMethodHS256, pubPEM, valid(), nil), authz.ReasonInvalidSignature},
		{"HS256 keyed with the public key DER", mint(t, jwt.SigningMethodHS256, pubDER, valid(), nil), authz.ReasonInvalidSignature},
		{"HS384 keyed with the public key PEM", mint(t, jwt.SigningMethodHS384, pubPEM, valid(), nil), authz.ReasonAlgorithm},
		{"HS512 keyed with the public key DER", mint(t, jwt.SigningMethodHS512, pubDER, valid(), nil), authz.ReasonAlgorithm},
		// kid tricks
		{"kid is a path", mint(t, jwt.SigningMethodRS256, attacker, valid(), map[string]any{"kid": "../../../../dev/null"}), authz.ReasonInvalidSignature},
		{"kid is a URL", mint(t, jwt.SigningMethodRS256, attacker, valid(), map[string]any{"kid": "https://evil.example/jwks.json"}), authz.ReasonInvalidSignature},
		{"kid is 10 KB", mint(t, jwt.SigningMethodRS256, attacker, valid(), map[string]any{"kid": strings.Repeat("k", 10<<10)}), authz.ReasonMalformed},
		{"kid is not a string", rs(valid(), map[string]any{"kid": 7}), authz.ReasonMalformed},
		// key-carrying headers are never used to find a key
		{"jwk header with the attacker's key", mint(t, jwt.SigningMethodRS256, attacker, valid(), map[string]any{"jwk": attackerJWKMap}), authz.ReasonInvalidSignature},
		{"jku header to the attacker's set", mint(t, jwt.SigningMethodRS256, attacker, valid(), map[string]any{"jku": "https://evil.example/jwks.json", "kid": "evil"}), authz.ReasonInvalidSignature},
		{"x5u header", mint(t, jwt.SigningMethodRS256, attacker, valid(), map[string]any{"x5u": "https://evil.example/cert.pem"}), authz.ReasonInvalidSignature},
		{"x5c header with the attacker's key", mint(t, jwt.SigningMethodRS256, attacker, valid(), map[string]any{"x5c": []string{enc(attackerJWK)}}), authz.ReasonInvalidSignature},
		// crit (RFC 7515 §4.1.11), nesting
		{"crit with an unknown extension", rs(valid(), map[string]any{"crit": []string{"urn:example:ext"}, "urn:example:ext": true}), authz.ReasonMalformed},
		{"nested JWT (cty JWT)", raw(`{"alg":"HS256","cty":"JWT"}`, good, secret, nil), authz.ReasonMalformed},
		// claim shapes
		{"duplicate claim names", raw(`{"alg":"HS256"}`, payload(`,"username":"root"`), secret, nil), authz.ReasonMalformed},
		{"duplicate header names", raw(`{"alg":"HS256","alg":"none"}`, payload(""), secret, nil), authz.ReasonMalformed},
		{"exp as a string", rs(with(map[string]any{"exp": fmt.Sprint(exp)}), nil), authz.ReasonMalformed},
		{"exp as a float", rs(with(map[string]any{"exp": float64(exp) + 0.5}), nil), authz.ReasonClaimsSchema},
		{"exp negative", rs(with(map[string]any{"exp": -1}), nil), authz.ReasonMalformed},
		{"exp huge", raw(`{"alg":"HS256"}`, `{"username":"victim","aud":"api","exp":1e300}`, secret, nil), authz.ReasonMalformed},
		{"exp overflowing", raw(`{"alg":"HS256"}`, `{"username":"victim","aud":"api","exp":1e400}`, secret, nil), authz.ReasonMalformed},
		{"nbf as a string", rs(with(map[string]any{"nbf": "0"}), nil), authz.ReasonMalformed},
		{"nbf huge (would wrap past int64)", raw(`{"alg":"HS256"}`, payload(`,"nbf":1e300`), secret, nil), authz.ReasonMalformed},
		{"nbf as a float in the future", rs(with(map[string]any{"nbf": float64(now.Add(time.Hour).Unix()) + 0.25}), nil), authz.ReasonNotYetValid},
		{"aud a string, not ours", rs(with(map[string]any{"aud": "other"}), nil), authz.ReasonAudience},
		{"aud an array, not ours", rs(with(map[string]any{"aud": []string{"other", "apis"}}), nil), authz.ReasonAudience},
		{"aud a number", rs(with(map[string]any{"aud": 42}), nil), authz.ReasonMalformed},
		{"username with NUL", rs(with(map[string]any{"username": "vic\x00tim"}), nil), authz.ReasonClaimsSchema},
		{"username with control characters", rs(with(map[string]any{"username": "victim\r\nx-auth-user: root"}), nil), authz.ReasonClaimsSchema},
		{"username over 256 bytes", rs(with(map[string]any{"username": strings.Repeat("v", 257)}), nil), authz.ReasonClaimsSchema},
		// second attack round: usernames that would be a second user the
		// upstream sees as the first, and payloads read two ways
		{"username with a trailing space", rs(with(map[string]any{"username": "victim "}), nil), authz.ReasonClaimsSchema},
		{"username with a leading no-break space", rs(with(map[string]any{"username": "\u00a0victim"}), nil), authz.ReasonClaimsSchema},
		{"username not in NFC", rs(with(map[string]any{"username": "vi\u0301ctim"}), nil), authz.ReasonClaimsSchema},
		{"username of invalid UTF-8", raw(`{"alg":"HS256"}`, fmt.Sprintf("{\"username\":\"vic\xfftim\",\"aud\":\"api\",\"exp\":%d}", exp), secret, nil), authz.ReasonClaimsSchema},
		{"payload of two JSON texts", raw(`{"alg":"HS256"}`, payload("")+`{"username":"root"}`, secret, nil), authz.ReasonMalformed},
		{"header followed by data", raw(`{"alg":"HS256"} x`, payload(""), secret, nil), authz.ReasonMalformed},
		{"payload nested 10,000 levels", raw(`{"alg":"HS256"}`, `{"username":"victim","exp":1,"x":`+deep+`}`, secret, nil), authz.ReasonMalformed},
		{"header with 1,000 entries", raw(string(bigHeader), payload(""), secret, nil), authz.ReasonMalformed},
		// structure
		{"4 segments", good + ".x", authz.ReasonMalformed},
		{"5 segments (a JWE)", enc([]byte(`{"alg":"RSA-OAEP","enc":"A256GCM"}`)) + ".a.b.c.d", authz.ReasonMalformed},
		{"6 segments", good + ".x.y.z", authz.ReasonMalformed},
		{"empty signature", goodParts[0] + "." + goodParts[1] + ".", authz.ReasonInvalidSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := checkAttack(t, target, request(bearer(tc.token)))
			assertDenied(t, resp, tc.reason, true)
			assertStillServing(t, target, good)
		})
	}

	t.Run("10,000 request headers", func(t *testing.T) {
		h := bearer(good)
		for i := range 10000 {
			h[fmt.Sprintf("x-h-%d", i)] = "v"
		}
		assertDenied(t, checkAttack(t, target, request(h)), authz.ReasonMalformed, false)
		assertStillServing(t, target, good)
	})
	t.Run("10,000 headers in header_map", func(t *testing.T) {
		hs := [][2]string{{"authorization", "Bearer " + good}}
		for i := range 10000 {
			hs = append(hs, [2]string{fmt.Sprintf("x-h-%d", i), "v"})
		}
		assertDenied(t, checkAttack(t, target, requestHeaderMap(hs)), authz.ReasonMalformed, false)
		assertStillServing(t, target, good)
	})
	t.Run("1 MB authorization header", func(t *testing.T) {
		resp := checkAttack(t, target, request(map[string]string{"authorization": "Bearer " + strings.Repeat("a", 1<<20)}))
		assertDenied(t, resp, authz.ReasonMalformed, true)
		assertStillServing(t, target, good)
	})
	t.Run("two authorization headers in header_map", func(t *testing.T) {
		hs := [][2]string{{"authorization", "Bearer " + good}, {"Authorization", "Bearer " + rs(with(map[string]any{"username": "root"}), nil)}}
		assertDenied(t, checkAttack(t, target, requestHeaderMap(hs)), authz.ReasonMalformed, true)
	})
}

func checkAttack(t *testing.T, target *attackTarget, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := target.check.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check returned a gRPC error, want a CheckResponse: %v", err)
	}
	return resp
}

// assertStillServing checks that the server answers health SERVING and still
// allows a good token.
func assertStillServing(t *testing.T, target *attackTarget, good string) {
	t.Helper()
	h, err := target.health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after the attack: %v %v", h.GetStatus(), err)
	}
	resp := checkAttack(t, target, request(bearer(good)))
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("a good token is refused after the attack: %v", resp.GetStatus())
	}
}
