package authz

import (
	"crypto/sha256"
	"encoding/binary"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestTokenCacheStaysWithinBound(t *testing.T) {
	const bound, tokens = 1000, 100_000
	now := time.Unix(1_800_000_000, 0)
	c := newTokenCache(bound, 0)
	gen := func(string) uint64 { return 1 }
	for i := range tokens {
		var raw [8]byte
		binary.BigEndian.PutUint64(raw[:], uint64(i))
		key := sha256.Sum256(raw[:])
		c.put(&key, &verified{provider: "p", validUntil: now.Add(time.Hour), keyGen: 1}, now)
		if n := c.len(); n > bound {
			t.Fatalf("after %d puts the cache holds %d entries, over its bound of %d", i+1, n, bound)
		}
	}
	// The newest entry is there; the cache still serves hits.
	var raw [8]byte
	binary.BigEndian.PutUint64(raw[:], tokens-1)
	key := sha256.Sum256(raw[:])
	if c.get(&key, now, gen) == nil {
		t.Error("the newest entry is missing")
	}
}

func TestTokenCacheEvictsExpiredFirst(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := newTokenCache(cacheShards, 0)                                                 // one entry per shard
	keyFor := func(b byte) *[sha256.Size]byte { k := [sha256.Size]byte{b}; return &k } // same shard: b % 64
	c.put(keyFor(0), &verified{validUntil: now.Add(time.Second)}, now)
	later := now.Add(time.Minute)
	c.put(keyFor(64), &verified{validUntil: later.Add(time.Hour)}, later)
	if c.get(keyFor(0), now, func(string) uint64 { return 0 }) != nil {
		t.Error("the expired entry was kept over the new one")
	}
	if c.get(keyFor(64), later, func(string) uint64 { return 0 }) == nil {
		t.Error("the new entry is missing")
	}
}

func TestTokenCacheDisabled(t *testing.T) {
	if newTokenCache(0, 0) != nil {
		t.Error("max_entries 0 must disable the cache")
	}
}

// TestTokenCacheBoundedInBytes fills a cache with large entries (a 1.2 KB
// payload each, as with the payload header on): the bytes held stay under
// the bound, far below what max_entries alone would allow.
func TestTokenCacheBoundedInBytes(t *testing.T) {
	const maxBytes = 1 << 20
	now := time.Unix(1_800_000_000, 0)
	c := newTokenCache(100_000, maxBytes)
	payload := string(make([]byte, 1200))
	for i := range 100_000 {
		var raw [8]byte
		binary.BigEndian.PutUint64(raw[:], uint64(i))
		key := sha256.Sum256(raw[:])
		c.put(&key, &verified{provider: "p", username: "user", payload: payload, validUntil: now.Add(time.Hour)}, now)
	}
	held, entries := 0, c.len()
	for i := range c.shards {
		held += c.shards[i].bytes
	}
	if held > maxBytes {
		t.Errorf("cache holds %d bytes of entries, over its bound of %d", held, maxBytes)
	}
	if entries == 0 || entries > maxBytes/1200 {
		t.Errorf("cache holds %d entries of over 1200 bytes each, want some and at most %d", entries, maxBytes/1200)
	}
	t.Logf("%d entries, %d bytes (bound %d)", entries, held, maxBytes)
}

// TestEntrySize holds the cache's size estimate to the heap it measures
// for entries as the common config makes them (a username, a subject and
// one claim header), so cache.max_bytes bounds what it says: within 20 %.
func TestEntrySize(t *testing.T) {
	const n = 20_000
	now := time.Unix(1_800_000_000, 0)
	c := newTokenCache(1<<30, 1<<40)
	entries := make([]*verified, n)
	for i := range entries {
		u := "user-" + strconv.Itoa(i)
		entries[i] = &verified{provider: "p", username: u, subject: "sub-" + u,
			claims: map[string]string{"email": u + "@example.com"}, validUntil: now.Add(time.Hour)}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	estimate := 0
	for i, v := range entries {
		var raw [8]byte
		binary.BigEndian.PutUint64(raw[:], uint64(i))
		key := sha256.Sum256(raw[:])
		c.put(&key, v, now)
		estimate += v.size()
	}
	// The entries existed before: what the heap grew by is the map's; add
	// what they hold, built the same way again and measured.
	runtime.GC()
	runtime.ReadMemStats(&after)
	slots := int(after.HeapAlloc) - int(before.HeapAlloc)
	runtime.ReadMemStats(&before)
	again := make([]*verified, n)
	for i := range again {
		u := "user-" + strconv.Itoa(i)
		again[i] = &verified{provider: "p", username: u, subject: "sub-" + u,
			claims: map[string]string{"email": u + "@example.com"}, validUntil: now.Add(time.Hour)}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int(after.HeapAlloc) - int(before.HeapAlloc) - 8*n // less the slice of pointers
	measured := (slots + held) / n
	if got := estimate / n; got < measured*8/10 || got > measured*12/10 {
		t.Errorf("size() estimates %d bytes per entry; the heap measures %d", got, measured)
	}
	t.Logf("estimate %d, measured %d bytes per entry (%d in the map, %d in the entry)", estimate/n, measured, slots/n, held/n)
	runtime.KeepAlive(c)
	runtime.KeepAlive(again)
}
