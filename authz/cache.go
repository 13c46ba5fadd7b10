package authz

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verified is what the Check path needs of a verified token, and what the
// token cache holds: no claims beyond those the headers and the store use.
type verified struct {
	provider   string
	username   string
	subject    string
	payload    string            // kept only when a payload header is configured
	claims     map[string]string // claim path -> header value; read-only once built
	validUntil time.Time         // exp + leeway: valid strictly before it
	keyGen     uint64            // generation of the key set that verified it
	scopes     []string          // when some route asks for scopes
	ruleClaims map[string]any    // claims the routes' conditions name, by path; read-only
}

// The route.Token a rule's conditions read.
func (v *verified) Provider() string { return v.provider }
func (v *verified) Scopes() []string { return v.scopes }
func (v *verified) Claim(path string) (any, bool) {
	val, ok := v.ruleClaims[path]
	return val, ok
}

// cacheShards spreads the cache's lock; a power of two.
const cacheShards = 64

// tokenCache maps the SHA-256 of a token to its verification. A
// cryptographic hash, because a collision would let one token ride on
// another's verification. Only successful verifications are stored, so
// invalid tokens cannot fill it. It is bounded: a full shard first drops
// expired entries it finds, then an arbitrary one.
type tokenCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]*verified
}

// newTokenCache returns a cache of at most maxEntries tokens, or nil (no
// cache) when maxEntries is 0.
func newTokenCache(maxEntries int) *tokenCache {
	if maxEntries <= 0 {
		return nil
	}
	c := &tokenCache{perShard: max(1, maxEntries/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*verified)
	}
	return c
}

func (c *tokenCache) shard(key *[sha256.Size]byte) *cacheShard {
	return &c.shards[key[0]%cacheShards]
}

// get returns the cached verification of the token with this key if it is
// still valid at now and was verified by the key set now in force.
func (c *tokenCache) get(key *[sha256.Size]byte, now time.Time, keyGen func(provider string) uint64) *verified {
	s := c.shard(key)
	s.mu.RLock()
	v := s.m[*key]
	s.mu.RUnlock()
	if v == nil || !now.Before(v.validUntil) || keyGen(v.provider) != v.keyGen {
		return nil
	}
	return v
}

// put stores v under key.
func (c *tokenCache) put(key *[sha256.Size]byte, v *verified, now time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[*key]; !ok && len(s.m) >= c.perShard {
		s.evict(now)
	}
	s.m[*key] = v
}

// evict makes room for one entry: expired entries among the first few the
// map yields go first, else the first one (map order is randomised).
func (s *cacheShard) evict(now time.Time) {
	const scan = 8
	var victim [sha256.Size]byte
	found, n := false, 0
	for k, v := range s.m {
		if !now.Before(v.validUntil) {
			delete(s.m, k)
			return
		}
		if !found {
			victim, found = k, true
		}
		if n++; n == scan {
			break
		}
	}
	if found {
		delete(s.m, victim)
	}
}

// len returns the number of entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
