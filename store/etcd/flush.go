package etcd

import (
	"context"
	"fmt"
	"maps"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

// flushLoop flushes the write-behind state every interval until Close.
func (s *Store) flushLoop() {
	defer close(s.flushDone)
	t := time.NewTicker(s.opts.FlushInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-s.stopFlush:
			return
		case <-t.C:
		}
		// A failure repeats every tick while etcd is away: log the change.
		switch err := s.Flush(); {
		case err != nil && !failing:
			// The pending state is kept for the next tick; an operator
			// must look if this lasts, since it is lost on a crash.
			s.log.Error("store write-behind failing; keeping the state in memory", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("store write-behind recovered")
			failing = false
		}
	}
}

// pending is one user's write-behind state as taken by a flush.
type pending struct {
	sh          *shard
	u           *user
	last        time.Time
	count       uint64
	claims      map[string]string
	claimsGen   uint64
	claimsDirty bool
}

// Flush writes the pending last_login, login_count and claims of every
// user now, merging them into the stored records, which other replicas
// may change meanwhile. On failure the pending state is kept for the next
// Flush.
func (s *Store) Flush() error {
	if !s.Ready() {
		return nil // Logins fail until then: nothing is pending
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()

	var ps []pending
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, u := range sh.dirty {
			u.dirty = false
			ps = append(ps, pending{
				sh:          sh,
				u:           u,
				last:        u.last,
				count:       u.count,
				claims:      u.claims,
				claimsGen:   u.claimsGen,
				claimsDirty: u.claimsGen != u.storedGen,
			})
		}
		clear(sh.dirty)
		sh.dirty = sh.dirty[:0]
		sh.mu.Unlock()
	}
	if len(ps) == 0 {
		return nil
	}

	written := 0
	err := s.reachable()
	for err == nil && written < len(ps) {
		chunk := ps[written:min(written+txnChunk, len(ps))]
		if err = s.flushChunk(chunk); err == nil {
			written += len(chunk)
		}
	}

	for i := range ps {
		p := &ps[i]
		p.sh.mu.Lock()
		u := p.u
		if i >= written {
			if !u.dirty {
				u.dirty = true
				p.sh.dirty = append(p.sh.dirty, u)
			}
		} else {
			// Logins during the flush added to the pending state; keep
			// only what they added.
			u.count -= p.count
			if !u.last.After(p.last) {
				u.last = time.Time{}
			}
			if p.claimsDirty {
				u.storedGen = p.claimsGen
			}
		}
		p.sh.mu.Unlock()
	}

	if err != nil {
		return fmt.Errorf("flush %d users: %w", len(ps)-written, err)
	}
	return nil
}

// flushChunk merges the pending state of up to txnChunk users into their
// records: it reads them, then writes them back in one transaction guarded
// by their mod revisions, and reads and merges again when another writer
// came between.
func (s *Store) flushChunk(ps []pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	keys := make([]string, len(ps))
	gets := make([]clientv3.Op, len(ps))
	for i := range ps {
		keys[i] = s.usersPrefix + ps[i].u.key
		gets[i] = clientv3.OpGet(keys[i])
	}
	resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
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
			var rec adminv1.User
			if err := proto.Unmarshal(kvs[0].Value, &rec); err != nil {
				return fmt.Errorf("decode %s: %w", keys[i], err)
			}
			p := &ps[i]
			applyPending(&rec, p.last, p.count, p.claims, p.claimsDirty)
			v, err := proto.Marshal(&rec)
			if err != nil {
				return fmt.Errorf("encode %s: %w", keys[i], err)
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(keys[i]), "=", kvs[0].ModRevision))
			puts = append(puts, clientv3.OpPut(keys[i], string(v)))
		}
		if len(puts) == 0 {
			return nil
		}
		tresp, err := s.cli.Txn(ctx).If(cmps...).Then(puts...).Else(gets...).Commit()
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

// applyPending adds write-behind state to a stored record.
func applyPending(rec *adminv1.User, last time.Time, count uint64, claims map[string]string, claimsDirty bool) {
	if !last.IsZero() && (rec.GetLastLogin() == nil || last.After(rec.GetLastLogin().AsTime())) {
		rec.LastLogin = timestamppb.New(last)
	}
	rec.LoginCount += count
	if claimsDirty {
		rec.Claims = claims
	}
}

// addPending adds this replica's state not yet written behind to rec, the
// record of key. s.flushMu must be held, so that no flush moves it to etcd
// meanwhile.
func (s *Store) addPending(rec *adminv1.User, key string) {
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	u := sh.users[key]
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
