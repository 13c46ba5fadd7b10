package store

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

// User returns the user with the given key, including the last_login,
// login_count and claims not yet written behind. It returns an error
// wrapping ErrNotFound when there is no such user.
func (db *DB) User(ctx context.Context, provider, username string) (*adminv1.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, errorf("get", provider, username, err)
	}
	key := appendKey(nil, provider, username)
	db.flushMu.RLock()
	defer db.flushMu.RUnlock()
	var rec *adminv1.User
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		var err error
		rec, err = decode(tx.Bucket(bucketUsers).Get(key))
		return err
	})
	if err != nil {
		return nil, errorf("get", provider, username, err)
	}
	db.addPending(rec, key)
	return rec, nil
}

// List returns up to limit users with ids above afterID, ordered by id,
// including the state not yet written behind. A non-empty provider keeps
// only that provider's users. A limit <= 0 means no limit.
//
// Ids only grow, and a user becomes visible with all smaller ids already
// visible, so paging by the last id seen neither skips nor repeats a user
// while others are being created.
func (db *DB) List(ctx context.Context, provider string, afterID uint64, limit int) ([]*adminv1.User, error) {
	if afterID == math.MaxUint64 {
		return nil, nil
	}
	var prefix []byte
	if provider != "" {
		prefix = appendKey(nil, provider, "")
	}
	db.flushMu.RLock()
	defer db.flushMu.RUnlock()
	var out []*adminv1.User
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		c := tx.Bucket(bucketIDs).Cursor()
		for k, key := c.Seek(appendID(nil, afterID+1)); k != nil; k, key = c.Next() {
			if limit > 0 && len(out) >= limit {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if !bytes.HasPrefix(key, prefix) {
				continue
			}
			rec, err := decode(users.Get(key))
			if err != nil {
				return fmt.Errorf("user id %x: %w", k, err)
			}
			db.addPending(rec, key)
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list users of provider %q after id %d: %w", provider, afterID, err)
	}
	return out, nil
}

// SetActive activates or deactivates a user and returns it. The change is
// durable before SetActive returns, and the next Login sees it. It returns
// an error wrapping ErrNotFound when there is no such user.
func (db *DB) SetActive(ctx context.Context, provider, username string, active bool) (*adminv1.User, error) {
	if err := ctx.Err(); err != nil {
		return nil, errorf("set active", provider, username, err)
	}
	key := appendKey(nil, provider, username)
	// Serialises SetActive calls, so that the order in memory is the order
	// on disk, and keeps Flush from writing between the two.
	db.flushMu.Lock()
	defer db.flushMu.Unlock()
	var rec *adminv1.User
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		var err error
		if rec, err = decode(users.Get(key)); err != nil {
			return err
		}
		rec.Active = active
		v, err := proto.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		return users.Put(key, v)
	})
	if err != nil {
		return nil, errorf("set active", provider, username, err)
	}

	s := db.shardFor(key)
	s.mu.Lock()
	if u := s.users[string(key)]; u != nil {
		u.active = active
	} else if c := s.creating[string(key)]; c != nil {
		// The record was just created; its creator has yet to put the user
		// in memory, and will take this state.
		c.setActive = &active
	}
	s.mu.Unlock()
	db.addPending(rec, key)
	return rec, nil
}

// decode unmarshals a record read inside a transaction into a new User,
// which no longer refers to v. A nil v is ErrNotFound.
func decode(v []byte) (*adminv1.User, error) {
	if v == nil {
		return nil, ErrNotFound
	}
	rec := new(adminv1.User)
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return rec, nil
}

// addPending adds the in-memory state not yet written behind to rec.
// db.flushMu must be held, so that no flush moves it to disk meanwhile.
func (db *DB) addPending(rec *adminv1.User, key []byte) {
	s := db.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[string(key)]
	if u == nil {
		return
	}
	dirty := u.claimsGen != u.storedGen
	var claims map[string]string
	if dirty {
		claims = maps.Clone(u.claims)
	}
	applyPending(rec, u.last, u.count, claims, dirty)
}
