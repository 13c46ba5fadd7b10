package etcd

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
)

// keyBufSize covers the keys of ordinary names without a heap allocation.
const keyBufSize = 128

// Login records a successful authentication and returns the user's
// identity.
//
// A known user is served from memory, without asking etcd: an inactive
// one gets Identity{Active: false} and nothing is recorded; an active one
// has last_login and login_count updated in memory, written behind. An
// unknown user is created, active, and committed to etcd before Login
// returns; concurrent first Logins of one user, on this replica or on
// others, make one record, and exactly one of them gets New set. A failed
// creation is returned as an error (wrapping ErrUnavailable when etcd
// cannot be reached); a later Login tries again.
func (s *Store) Login(ctx context.Context, l store.Login) (store.Identity, error) {
	var buf [keyBufSize]byte
	k := appendKey(buf[:0], l.Provider, l.Username)
	sh := s.shardForBytes(k)
	for {
		if s.closed.Load() {
			return store.Identity{}, errorf("login", l.Provider, l.Username, store.ErrClosed)
		}
		sh.mu.Lock()
		if u := sh.users[string(k)]; u != nil {
			id := sh.login(u, &l)
			sh.mu.Unlock()
			return id, nil
		}
		c := sh.creating[string(k)]
		if c == nil {
			break // with sh.mu held: this Login creates the user
		}
		sh.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return store.Identity{}, errorf("login", l.Provider, l.Username, ctx.Err())
		}
		if c.err != nil {
			return store.Identity{}, c.err
		}
		// The user is in memory now: count this Login like any other.
	}

	key := string(k)
	c := &creation{done: make(chan struct{})}
	sh.creating[key] = c
	sh.mu.Unlock()

	rec, rev, created, err := s.create(ctx, key, l)

	var id store.Identity
	sh.mu.Lock()
	delete(sh.creating, key)
	switch {
	case err != nil:
		c.err = errorf("create", l.Provider, l.Username, err)
	case created:
		sh.apply(key, rec, rev)
		id = store.Identity{ID: rec.GetId(), Active: true, New: true}
	default:
		// Another replica, or an earlier Login whose answer was lost,
		// stored the record first; this is an ordinary Login of it.
		id = sh.login(sh.apply(key, rec, rev), &l)
	}
	sh.mu.Unlock()
	close(c.done)
	if c.err != nil {
		return store.Identity{}, c.err
	}
	return id, nil
}

// login records l for the known user u; sh.mu must be held. It does not
// allocate unless the claims changed or the dirty list grows.
func (sh *shard) login(u *user, l *store.Login) store.Identity {
	if !u.active {
		return store.Identity{ID: u.id}
	}
	u.count++
	if l.At.After(u.last) {
		u.last = l.At
	}
	if !maps.Equal(u.claims, l.Claims) {
		u.claims = l.Claims // never modified: see store.Login.Claims
		u.claimsGen++
	}
	if !u.dirty {
		u.dirty = true
		sh.dirty = append(sh.dirty, u)
	}
	return store.Identity{ID: u.id, Active: true}
}

// create commits the record of a new user with the next id, in one
// transaction that succeeds only if the user does not exist yet and the id
// counter is as last seen; it retries with the fresh counter when another
// creation came first. It returns the record and its mod revision; created
// is false when the user existed already, and rec is then that record.
// l is taken by value so that only this slow path moves it to the heap.
func (s *Store) create(ctx context.Context, key string, l store.Login) (rec *adminv1.User, rev int64, created bool, err error) {
	// One creation at a time per replica: racing its own creations for the
	// counter would only make all but one of them try again.
	select {
	case s.createSem <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, false, ctx.Err()
	}
	defer func() { <-s.createSem }()

	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, 0, false, err
	}
	defer cancel()

	at := timestamppb.New(l.At)
	rec = &adminv1.User{
		Provider:   l.Provider,
		Username:   l.Username,
		Subject:    l.Subject,
		CreatedAt:  at,
		LastLogin:  at,
		LoginCount: 1,
		Active:     true,
		Claims:     l.Claims, // only read: see store.Login.Claims
	}
	userKey := s.usersPrefix + key
	for range maxAttempts {
		id := s.lastID + 1
		rec.Id = id
		v, err := proto.Marshal(rec)
		if err != nil {
			return nil, 0, false, fmt.Errorf("encode user: %w", err)
		}
		resp, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.CreateRevision(userKey), "=", 0),
			clientv3.Compare(clientv3.ModRevision(s.lastIDKey), "=", s.lastIDRev),
		).Then(
			clientv3.OpPut(userKey, string(v)),
			clientv3.OpPut(s.lastIDKey, strconv.FormatUint(id, 10)),
			clientv3.OpPut(s.idsPrefix+idName(id), usersDir+key),
		).Else(
			clientv3.OpGet(userKey),
			clientv3.OpGet(s.lastIDKey),
		).Commit()
		if err != nil {
			return nil, 0, false, fmt.Errorf("commit user: %w", err)
		}
		if resp.Succeeded {
			s.lastID, s.lastIDRev = id, resp.Header.Revision
			return rec, resp.Header.Revision, true, nil
		}
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			existing := new(adminv1.User)
			if err := proto.Unmarshal(kvs[0].Value, existing); err != nil {
				return nil, 0, false, fmt.Errorf("decode existing user: %w", err)
			}
			return existing, kvs[0].ModRevision, false, nil
		}
		// Another creation took the next id: go on from the counter now.
		s.lastID, s.lastIDRev = 0, 0
		if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
			if s.lastID, err = parseLastID(kvs[0].Value); err != nil {
				return nil, 0, false, err
			}
			s.lastIDRev = kvs[0].ModRevision
		}
	}
	return nil, 0, false, fmt.Errorf("id counter kept changing under %d tries", maxAttempts)
}
