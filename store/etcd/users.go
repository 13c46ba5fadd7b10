package etcd

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
)

// listPage is how many ids one read of List returns.
const listPage = 256

// User returns the user with the given key as stored in etcd, plus this
// replica's last_login, login_count and claims not yet written behind. It
// returns an error wrapping store.ErrNotFound when there is no such user.
func (s *Store) User(ctx context.Context, provider, username string) (*adminv1.User, error) {
	key := string(appendKey(nil, provider, username))
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, errorf("get", provider, username, err)
	}
	defer cancel()
	resp, err := s.cli.Get(ctx, s.usersPrefix+key)
	if err != nil {
		return nil, errorf("get", provider, username, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errorf("get", provider, username, store.ErrNotFound)
	}
	rec, err := decode(resp.Kvs[0].Value)
	if err != nil {
		return nil, errorf("get", provider, username, err)
	}
	s.addPending(rec, key)
	return rec, nil
}

// List returns up to limit users with ids above afterID, ordered by id,
// including this replica's state not yet written behind. A non-empty
// provider keeps only that provider's users. A limit <= 0 means no limit.
//
// A user's id and its ids/ entry are committed in the transaction that
// advances the id counter, so a user becomes visible with every smaller id
// already visible: paging by the last id seen neither skips nor repeats a
// user while others are being created, on any replica.
func (s *Store) List(ctx context.Context, provider string, afterID uint64, limit int) ([]*adminv1.User, error) {
	if afterID == math.MaxUint64 {
		return nil, nil
	}
	var filter []byte
	if provider != "" {
		filter = []byte(usersDir + providerPrefix(provider))
	}
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	out, err := s.list(ctx, filter, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list users of provider %q after id %d: %w", provider, afterID, err)
	}
	return out, nil
}

func (s *Store) list(ctx context.Context, filter []byte, afterID uint64, limit int) ([]*adminv1.User, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var out []*adminv1.User
	from, end := s.idsPrefix+idName(afterID+1), clientv3.GetPrefixRangeEnd(s.idsPrefix)
	for {
		page := int64(listPage)
		if limit > 0 && filter == nil {
			page = int64(min(listPage, limit-len(out)))
		}
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(page))
		if err != nil {
			return nil, err
		}
		var keys []string // below users/
		var ids []uint64
		for _, kv := range resp.Kvs {
			if !bytes.HasPrefix(kv.Value, filter) {
				continue
			}
			key, ok := bytes.CutPrefix(kv.Value, []byte(usersDir))
			if !ok {
				return nil, fmt.Errorf("%s holds %q, not a user key", kv.Key, kv.Value)
			}
			id, err := strconv.ParseUint(string(kv.Key[len(s.idsPrefix):]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s is not an id key: %w", kv.Key, err)
			}
			keys, ids = append(keys, string(key)), append(ids, id)
		}
		recs, err := s.records(ctx, keys)
		if err != nil {
			return nil, err
		}
		for i, rec := range recs {
			if rec == nil || rec.GetId() != ids[i] {
				continue // deleted, or deleted and created again under a new id
			}
			s.addPending(rec, keys[i])
			out = append(out, rec)
			if limit > 0 && len(out) >= limit {
				return out, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// records reads the records of keys (below users/), txnChunk at a time in
// one transaction each; a missing record is nil.
func (s *Store) records(ctx context.Context, keys []string) ([]*adminv1.User, error) {
	recs := make([]*adminv1.User, 0, len(keys))
	for len(keys) > 0 {
		chunk := keys[:min(txnChunk, len(keys))]
		keys = keys[len(chunk):]
		gets := make([]clientv3.Op, len(chunk))
		for i, k := range chunk {
			gets[i] = clientv3.OpGet(s.usersPrefix + k)
		}
		resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return nil, err
		}
		for i, r := range resp.Responses {
			kvs := r.GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				recs = append(recs, nil)
				continue
			}
			rec, err := decode(kvs[0].Value)
			if err != nil {
				return nil, fmt.Errorf("%s%s: %w", s.usersPrefix, chunk[i], err)
			}
			recs = append(recs, rec)
		}
	}
	return recs, nil
}

// SetActive activates or deactivates a user and returns it. The change is
// committed before SetActive returns; this replica's next Login sees it,
// and the other replicas' as soon as their watch delivers it. It returns
// an error wrapping store.ErrNotFound when there is no such user.
func (s *Store) SetActive(ctx context.Context, provider, username string, active bool) (*adminv1.User, error) {
	key := string(appendKey(nil, provider, username))
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	rec, err := s.setActive(ctx, key, active)
	if err != nil {
		return nil, errorf("set active", provider, username, err)
	}
	s.addPending(rec, key)
	return rec, nil
}

// setActive changes the record in a transaction guarded by its mod
// revision, reading it again when another writer came between.
func (s *Store) setActive(ctx context.Context, key string, active bool) (*adminv1.User, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	userKey := s.usersPrefix + key
	resp, err := s.cli.Get(ctx, userKey)
	if err != nil {
		return nil, err
	}
	kvs := resp.Kvs
	for range maxAttempts {
		if len(kvs) == 0 {
			return nil, store.ErrNotFound
		}
		rec, err := decode(kvs[0].Value)
		if err != nil {
			return nil, err
		}
		rec.Active = active
		v, err := proto.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("encode: %w", err)
		}
		tresp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(userKey), "=", kvs[0].ModRevision)).
			Then(clientv3.OpPut(userKey, string(v))).
			Else(clientv3.OpGet(userKey)).
			Commit()
		if err != nil {
			return nil, err
		}
		if tresp.Succeeded {
			// Memory first, so this replica denies from the next Login on,
			// without waiting for its watch.
			s.apply(key, rec, tresp.Header.Revision)
			return rec, nil
		}
		kvs = tresp.Responses[0].GetResponseRange().GetKvs()
	}
	return nil, fmt.Errorf("record kept changing under %d tries", maxAttempts)
}

// decode unmarshals a stored record.
func decode(v []byte) (*adminv1.User, error) {
	rec := new(adminv1.User)
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return rec, nil
}
