package store

import (
	"context"
	"fmt"
	"maps"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

// Login is one successful authentication, as the Check path reports it.
type Login struct {
	Provider, Username, Subject string
	// Claims are the claims named in the provider's claim_headers, by claim
	// path. It may be nil; it replaces the stored claims when it differs.
	// The store keeps the map itself, not a copy (one map per cached token
	// serves every Login of it): the caller must not modify it afterwards.
	Claims map[string]string
	// At is the time of the authentication; the caller passes it in.
	At time.Time
}

// Identity is what the Check path needs back about the user of a Login.
type Identity struct {
	ID     uint64
	Active bool
	New    bool // this Login created the user
}

// keyBufSize covers the keys of ordinary names without a heap allocation.
const keyBufSize = 128

// Login records a successful authentication and returns the user's
// identity.
//
// A known user is served from memory: an inactive one gets
// Identity{Active: false} and nothing is recorded; an active one has
// last_login and login_count updated in memory, written behind. An unknown
// user is created, active, and written durably before Login returns;
// concurrent first Logins of one user share that write, and exactly one of
// them gets New set. A failed write is returned as an error wrapping its
// cause; a later Login tries again.
func (db *DB) Login(ctx context.Context, l Login) (Identity, error) {
	var buf [keyBufSize]byte
	k := appendKey(buf[:0], l.Provider, l.Username)
	s := db.shardFor(k)
	for {
		if db.closed.Load() {
			return Identity{}, errorf("login", l.Provider, l.Username, ErrClosed)
		}
		s.mu.Lock()
		if u := s.users[string(k)]; u != nil {
			id := s.login(u, &l)
			s.mu.Unlock()
			return id, nil
		}
		c := s.creating[string(k)]
		if c == nil {
			break // with s.mu held: this Login creates the user
		}
		s.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return Identity{}, errorf("login", l.Provider, l.Username, ctx.Err())
		}
		if c.err != nil {
			return Identity{}, c.err
		}
		// The user is in memory now: count this Login like any other.
	}

	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return Identity{}, errorf("login", l.Provider, l.Username, err)
	}
	key := string(k)
	c := &creation{done: make(chan struct{})}
	s.creating[key] = c
	s.mu.Unlock()

	u, created, err := db.create(key, l)

	s.mu.Lock()
	delete(s.creating, key)
	var id Identity
	if err != nil {
		c.err = errorf("create", l.Provider, l.Username, err)
	} else {
		if c.setActive != nil {
			u.active = *c.setActive
		}
		s.users[key] = u
		if created {
			id = Identity{ID: u.id, Active: true, New: true}
		} else {
			// Another writer stored the record first; this is an ordinary
			// Login of it.
			id = s.login(u, &l)
		}
	}
	s.mu.Unlock()
	close(c.done)
	if c.err != nil {
		return Identity{}, c.err
	}
	return id, nil
}

// login records l for the known user u; s.mu must be held. It does not
// allocate unless the claims changed or the dirty list grows.
func (s *shard) login(u *user, l *Login) Identity {
	if !u.active {
		return Identity{ID: u.id}
	}
	u.count++
	if l.At.After(u.last) {
		u.last = l.At
	}
	if !maps.Equal(u.claims, l.Claims) {
		u.claims = l.Claims // never modified: see Login.Claims
		u.claimsGen++
	}
	if !u.dirty {
		u.dirty = true
		s.dirty = append(s.dirty, u)
	}
	return Identity{ID: u.id, Active: true}
}

// create writes the record of a new user through bbolt's Batch and
// returns its hot state. created is false if the record already existed.
// l is taken by value so that only this slow path moves it to the heap.
func (db *DB) create(key string, l Login) (u *user, created bool, err error) {
	claims := l.Claims // kept, never modified: see Login.Claims
	at := timestamppb.New(l.At)
	bkey := []byte(key)
	// Batch may run fn twice (after a rolled-back try), so fn sets every
	// result afresh and touches nothing outside the transaction.
	fn := func(tx *bbolt.Tx) error {
		u, created = nil, false
		users, ids := tx.Bucket(bucketUsers), tx.Bucket(bucketIDs)
		if v := users.Get(bkey); v != nil {
			var rec adminv1.User
			if err := proto.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode existing user: %w", err)
			}
			u = &user{key: key, id: rec.GetId(), active: rec.GetActive(), claims: rec.GetClaims()}
			return nil
		}
		id, err := ids.NextSequence()
		if err != nil {
			return fmt.Errorf("next id: %w", err)
		}
		v, err := proto.Marshal(&adminv1.User{
			Id:         id,
			Provider:   l.Provider,
			Username:   l.Username,
			Subject:    l.Subject,
			CreatedAt:  at,
			LastLogin:  at,
			LoginCount: 1,
			Active:     true,
			Claims:     claims,
		})
		if err != nil {
			return fmt.Errorf("encode user: %w", err)
		}
		if err := users.Put(bkey, v); err != nil {
			return fmt.Errorf("put user: %w", err)
		}
		if err := ids.Put(appendID(nil, id), bkey); err != nil {
			return fmt.Errorf("put id %d: %w", id, err)
		}
		u = &user{key: key, id: id, active: true, claims: claims}
		created = true
		return nil
	}
	if err := db.bolt.Batch(fn); err != nil {
		return nil, false, err
	}
	return u, created, nil
}
