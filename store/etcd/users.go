package etcd

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
)

// listPage is how many ids one read of List returns.
const listPage = 256

// createChunk is how many users one creating transaction writes: two puts
// each and the id counter, within etcd's default of 128 operations.
const createChunk = 32

// Create commits new users, createChunk at a time, each chunk in one
// transaction that succeeds only if none of its users exists yet and the
// id counter is as last seen. When another replica came first, the users
// it created are returned as they are stored, and the others are tried
// again with the fresh counter.
func (b *backend) Create(ctx context.Context, recs []*adminv1.User) ([]store.Created, error) {
	out := make([]store.Created, len(recs))
	var todo []int // indexes of recs still to write
	for i, rec := range recs {
		// A record that cannot be encoded (a name that is not UTF-8) fails
		// alone, before it takes an id.
		if _, err := proto.Marshal(rec); err != nil {
			out[i].Err = fmt.Errorf("encode user: %w", err)
			continue
		}
		todo = append(todo, i)
	}
	ctx, cancel, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	for len(todo) > 0 {
		chunk := todo[:min(createChunk, len(todo))]
		todo = todo[len(chunk):]
		if err := b.createChunk(ctx, recs, chunk, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// createChunk writes the records recs[i] for i in idx, filling out.
func (b *backend) createChunk(ctx context.Context, recs []*adminv1.User, idx []int, out []store.Created) error {
	for range maxAttempts {
		if len(idx) == 0 {
			return nil
		}
		var cmps []clientv3.Cmp
		var puts, gets []clientv3.Op
		id := b.lastID
		for _, i := range idx {
			rec := recs[i]
			id++
			rec.Id = id
			v, err := proto.Marshal(rec)
			if err != nil {
				return fmt.Errorf("encode user: %w", err)
			}
			key := string(appendKey(nil, rec.GetProvider(), rec.GetUsername()))
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(b.usersPrefix+key), "=", 0))
			puts = append(puts,
				clientv3.OpPut(b.usersPrefix+key, string(v)),
				clientv3.OpPut(b.idsPrefix+idName(id), usersDir+key))
			gets = append(gets, clientv3.OpGet(b.usersPrefix+key))
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(b.lastIDKey), "=", b.lastIDRev))
		puts = append(puts, clientv3.OpPut(b.lastIDKey, strconv.FormatUint(id, 10)))
		gets = append(gets, clientv3.OpGet(b.lastIDKey))
		resp, err := b.cli.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
		if err != nil {
			return fmt.Errorf("commit users: %w", err)
		}
		if resp.Succeeded {
			b.lastID, b.lastIDRev = id, resp.Header.Revision
			for _, i := range idx {
				out[i] = store.Created{User: recs[i], Rev: resp.Header.Revision, New: true}
			}
			return nil
		}
		// Some users exist already, or another creation took the next ids:
		// answer the existing ones and go on from the counter as it is now.
		var rest []int
		for j, i := range idx {
			kvs := resp.Responses[j].GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				rest = append(rest, i)
				continue
			}
			existing, err := decode(kvs[0].Value)
			if err != nil {
				out[i].Err = fmt.Errorf("existing record: %w", err)
				continue
			}
			out[i] = store.Created{User: existing, Rev: kvs[0].ModRevision}
		}
		idx = rest
		b.lastID, b.lastIDRev = 0, 0
		if kvs := resp.Responses[len(resp.Responses)-1].GetResponseRange().GetKvs(); len(kvs) > 0 {
			if b.lastID, err = parseLastID(kvs[0].Value); err != nil {
				return err
			}
			b.lastIDRev = kvs[0].ModRevision
		}
	}
	return fmt.Errorf("id counter kept changing under %d tries", maxAttempts)
}

// Write merges the pending state into the stored records, which other
// replicas may change meanwhile, txnChunk users per transaction.
func (b *backend) Write(_ context.Context, ps []store.Pending) (int, error) {
	if err := b.reachable(); err != nil {
		return 0, err
	}
	written := 0
	for written < len(ps) {
		chunk := ps[written:min(written+txnChunk, len(ps))]
		if err := b.writeChunk(chunk); err != nil {
			return written, err
		}
		written += len(chunk)
	}
	return written, nil
}

// writeChunk merges the pending state of up to txnChunk users into their
// records: it reads them, then writes them back in one transaction guarded
// by their mod revisions, and reads and merges again when another writer
// came between.
func (b *backend) writeChunk(ps []store.Pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.RequestTimeout)
	defer cancel()
	keys := make([]string, len(ps))
	gets := make([]clientv3.Op, len(ps))
	for i := range ps {
		keys[i] = b.usersPrefix + string(appendKey(nil, ps[i].Provider, ps[i].Username))
		gets[i] = clientv3.OpGet(keys[i])
	}
	resp, err := b.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return err
	}
	for range maxAttempts {
		var cmps []clientv3.Cmp
		var puts []clientv3.Op
		for i, r := range resp.Responses {
			kvs := r.GetResponseRange().GetKvs()
			if len(kvs) == 0 {
				continue // deleted meanwhile: its pending state goes with it
			}
			rec, err := decode(kvs[0].Value)
			if err != nil {
				return fmt.Errorf("%s: %w", keys[i], err)
			}
			ps[i].Apply(rec)
			v, err := proto.Marshal(rec)
			if err != nil {
				return fmt.Errorf("encode %s: %w", keys[i], err)
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(keys[i]), "=", kvs[0].ModRevision))
			puts = append(puts, clientv3.OpPut(keys[i], string(v)))
		}
		if len(puts) == 0 {
			return nil
		}
		tresp, err := b.cli.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
		if err != nil {
			return err
		}
		if tresp.Succeeded {
			return nil
		}
		resp = tresp
	}
	return fmt.Errorf("records kept changing under %d tries", maxAttempts)
}

// Get returns one record as stored in etcd.
func (b *backend) Get(ctx context.Context, provider, username string) (*adminv1.User, error) {
	ctx, cancel, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := b.cli.Get(ctx, b.usersPrefix+string(appendKey(nil, provider, username)))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, store.ErrNotFound
	}
	return decode(resp.Kvs[0].Value)
}

// List pages through ids/. A user's id and its ids/ entry are committed in
// the transaction that advances the id counter, so a user becomes visible
// with every smaller id already visible, on any replica.
func (b *backend) List(ctx context.Context, provider string, afterID uint64, limit int) ([]*adminv1.User, error) {
	var filter []byte
	if provider != "" {
		filter = []byte(usersDir + providerPrefix(provider))
	}
	ctx, cancel, err := b.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	var out []*adminv1.User
	from, end := b.idsPrefix+idName(afterID+1), clientv3.GetPrefixRangeEnd(b.idsPrefix)
	for {
		page := int64(listPage)
		if limit > 0 && filter == nil {
			page = int64(min(listPage, limit-len(out)))
		}
		resp, err := b.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(page))
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
			id, err := strconv.ParseUint(string(kv.Key[len(b.idsPrefix):]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s is not an id key: %w", kv.Key, err)
			}
			keys, ids = append(keys, string(key)), append(ids, id)
		}
		recs, err := b.records(ctx, keys)
		if err != nil {
			return nil, err
		}
		for i, rec := range recs {
			if rec == nil || rec.GetId() != ids[i] {
				continue // deleted, or deleted and created again under a new id
			}
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
func (b *backend) records(ctx context.Context, keys []string) ([]*adminv1.User, error) {
	recs := make([]*adminv1.User, 0, len(keys))
	for len(keys) > 0 {
		chunk := keys[:min(txnChunk, len(keys))]
		keys = keys[len(chunk):]
		gets := make([]clientv3.Op, len(chunk))
		for i, k := range chunk {
			gets[i] = clientv3.OpGet(b.usersPrefix + k)
		}
		resp, err := b.cli.Txn(ctx).Then(gets...).Commit()
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
				return nil, fmt.Errorf("%s%s: %w", b.usersPrefix, chunk[i], err)
			}
			recs = append(recs, rec)
		}
	}
	return recs, nil
}

// SetActive changes the record in a transaction guarded by its mod
// revision, reading it again when another writer came between. The other
// replicas see the change as soon as their watch delivers it.
func (b *backend) SetActive(ctx context.Context, provider, username string, active bool) (*adminv1.User, int64, error) {
	ctx, cancel, err := b.begin(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	userKey := b.usersPrefix + string(appendKey(nil, provider, username))
	resp, err := b.cli.Get(ctx, userKey)
	if err != nil {
		return nil, 0, err
	}
	kvs := resp.Kvs
	for range maxAttempts {
		if len(kvs) == 0 {
			return nil, 0, store.ErrNotFound
		}
		rec, err := decode(kvs[0].Value)
		if err != nil {
			return nil, 0, err
		}
		rec.Active = active
		v, err := proto.Marshal(rec)
		if err != nil {
			return nil, 0, fmt.Errorf("encode: %w", err)
		}
		tresp, err := b.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(userKey), "=", kvs[0].ModRevision)).
			Then(clientv3.OpPut(userKey, string(v))).
			Else(clientv3.OpGet(userKey)).
			Commit()
		if err != nil {
			return nil, 0, err
		}
		if tresp.Succeeded {
			return rec, tresp.Header.Revision, nil
		}
		kvs = tresp.Responses[0].GetResponseRange().GetKvs()
	}
	return nil, 0, fmt.Errorf("record kept changing under %d tries", maxAttempts)
}

// decode unmarshals a stored record.
func decode(v []byte) (*adminv1.User, error) {
	rec := new(adminv1.User)
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return rec, nil
}
