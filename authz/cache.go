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
	rules      *ruleFacts        // nil unless some route asks for scopes or claims
}

// ruleFacts are what routes' conditions read of a token: apart, so that the
// common entry, with no such route, does not carry their room.
type ruleFacts struct {
	scopes []string       // when some route asks for scopes
	claims map[string]any // claims the routes' conditions name, by path; read-only
}

// The route.Token a rule's conditions read.
func (v *verified) Provider() string { return v.provider }
func (v *verified) Scopes() []string {
	if v.rules == nil {
		return nil
	}
	return v.rules.scopes
}
func (v *verified) Claim(path string) (any, bool) {
	if v.rules == nil {
		return nil, false
	}
	val, ok := v.rules.claims[path]
	return val, ok
}

// cacheShards spreads the cache's lock; a power of two.
const cacheShards = 64

// DefaultCacheMaxBytes bounds the memory of the verified-token cache when
// the config names no bound: the default max_entries of small tokens fit
// in it, and so do fewer large ones (a payload header copies each token's
// claims), within the Helm chart's memory limit with room.
const DefaultCacheMaxBytes = 64 << 20

// tokenCache maps the SHA-256 of a token to its verification. A
// cryptographic hash, because a collision would let one token ride on
// another's verification. Only successful verifications are stored, so
// invalid tokens cannot fill it. It is bounded in entries and in bytes
// (each entry's estimated size): a full shard first drops expired entries
// it finds, then arbitrary ones, until the new entry fits.
type tokenCache struct {
	perShard      int
	bytesPerShard int
	shards        [cacheShards]cacheShard
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[[sha256.Size]byte]*verified
	bytes int // sum of the entries' sizes
}

// newTokenCache returns a cache of at most maxEntries tokens and about
// maxBytes bytes (DefaultCacheMaxBytes when 0), or nil (no cache) when
// maxEntries is 0.
func newTokenCache(maxEntries, maxBytes int) *tokenCache {
	if maxEntries <= 0 {
		return nil
	}
	if maxBytes <= 0 {
		maxBytes = DefaultCacheMaxBytes
	}
	c := &tokenCache{perShard: max(1, maxEntries/cacheShards), bytesPerShard: max(1, maxBytes/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]*verified)
	}
	return c
}

// entryOverhead is what an entry costs besides its strings and maps: its
// slot in the shard's map (key and pointer, about 64 bytes at the map's
// usual load) and the verified struct (112 bytes). TestEntrySize holds the
// estimate to what the heap measures.
const entryOverhead = 64 + 112

// claimsMapOverhead is a Go map of up to 8 string pairs: its header and
// one group of 8 slots.
const claimsMapOverhead = 48 + 8 + 8*32

// heapString is the heap a string of n bytes takes: small allocations are
// rounded up to their size class, about 16 bytes apart.
func heapString(n int) int { return (n + 15) &^ 15 }

// size estimates the bytes an entry holds. Provider names and claim names
// are the config's, shared by every entry, so not counted.
func (v *verified) size() int {
	n := entryOverhead + heapString(len(v.username)) + heapString(len(v.subject)) + heapString(len(v.payload))
	if len(v.claims) > 0 {
		n += claimsMapOverhead + 40*max(0, len(v.claims)-8)
	}
	for _, val := range v.claims {
		n += heapString(len(val))
	}
	if r := v.rules; r != nil {
		n += 48
		for _, sc := range r.scopes {
			n += 16 + heapString(len(sc))
		}
		n += 64 * len(r.claims)
	}
	return n
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

// put stores v under key. An entry larger than a shard's byte bound is
// not stored.
func (c *tokenCache) put(key *[sha256.Size]byte, v *verified, now time.Time) {
	size := v.size()
	if size > c.bytesPerShard {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[*key]; ok {
		s.bytes -= old.size()
		delete(s.m, *key)
	}
	for len(s.m) > 0 && (len(s.m) >= c.perShard || s.bytes+size > c.bytesPerShard) {
		s.evict(now)
	}
	s.m[*key] = v
	s.bytes += size
}

// evict drops one entry: an expired one among the first few the map
// yields, else the first one (map order is randomised).
func (s *cacheShard) evict(now time.Time) {
	const scan = 8
	var victim [sha256.Size]byte
	found, n := false, 0
	for k, v := range s.m {
		if !now.Before(v.validUntil) {
			victim, found = k, true
			break
		}
		if !found {
			victim, found = k, true
		}
		if n++; n == scan {
			break
		}
	}
	if found {
		s.bytes -= s.m[victim].size()
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
