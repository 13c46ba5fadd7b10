// Package store is jwtauthz's user registry, whatever keeps it durably.
//
// It holds the vocabulary every backend shares (Login, Identity, the
// errors) and the one in-memory Engine that serves the Check path: a
// sharded table of known users, so that a known user's Login touches no
// disk or network; group commit of new users; and write-behind of
// last_login, login_count and claims. A Backend supplies only the durable
// part. Two exist: store/bolt keeps users in a bbolt file (one process),
// store/etcd in etcd (several replicas, kept current by a watch).
//
// A user is keyed by (provider, username) and stored as the adminv1.User
// message of proto/jwtauthz/admin/v1/admin.proto.
package store

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

// ErrNotFound is wrapped by the errors of lookups of a user that does not
// exist.
var ErrNotFound = errors.New("user not found")

// ErrClosed is returned by Login after Close.
var ErrClosed = errors.New("store closed")

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

// Backend keeps users durably. The Engine calls it; it never calls the
// Engine back except through the methods meant for it (Apply, Remove,
// Prune). Errors need not name the user: the Engine adds that.
type Backend interface {
	// Create writes the records of new users, each unless a record with its
	// provider and username exists, in as few commits as it can (one, for
	// bbolt), and assigns each new record its id. It returns one Created per
	// record, in order; an error fails the whole batch. Create is never
	// called concurrently with itself.
	Create(ctx context.Context, recs []*adminv1.User) ([]Created, error)
	// Write merges the write-behind state of ps into their stored records
	// and returns how many of ps, from the first, it wrote; on error the
	// rest stay pending. A user no longer stored is skipped.
	Write(ctx context.Context, ps []Pending) (written int, err error)
	// Get returns one stored record, or an error wrapping ErrNotFound.
	Get(ctx context.Context, provider, username string) (*adminv1.User, error)
	// List returns up to limit records (no limit when limit <= 0) with ids
	// above afterID, ordered by id; a non-empty provider keeps only its
	// users.
	List(ctx context.Context, provider string, afterID uint64, limit int) ([]*adminv1.User, error)
	// SetActive changes a stored record's active flag durably and returns
	// the record with its revision, or an error wrapping ErrNotFound.
	SetActive(ctx context.Context, provider, username string, active bool) (*adminv1.User, int64, error)
	// Close releases the backend, after the Engine's last write.
	Close() error
}

// Created is the outcome of one record of a Backend.Create.
type Created struct {
	// User is the stored record: the new one with its id, or the one that
	// existed already.
	User *adminv1.User
	// Rev orders the changes of one record: a change with a higher Rev is
	// later. bbolt gives its transaction id, etcd its mod revision.
	Rev int64
	New bool  // false when the record existed already
	Err error // this record could not be written; the others may have been
}

// Pending is one user's write-behind state, taken by a flush for a
// Backend to merge into the stored record.
type Pending struct {
	Provider, Username string
	Last               time.Time // latest login not yet stored; zero if none
	Count              uint64    // logins not yet added to login_count
	Claims             map[string]string
	ClaimsChanged      bool // Claims replaces the stored claims

	u         *user // where the flush puts the outcome back
	s         *shard
	claimsGen uint64
}

// Apply adds the pending state to rec, a stored record.
func (p *Pending) Apply(rec *adminv1.User) {
	if !p.Last.IsZero() && (rec.GetLastLogin() == nil || p.Last.After(rec.GetLastLogin().AsTime())) {
		rec.LastLogin = timestamppb.New(p.Last)
	}
	rec.LoginCount += p.Count
	if p.ClaimsChanged {
		rec.Claims = p.Claims
	}
}

// newRecord is the record of a user's first Login; the backend sets its id.
func newRecord(l *Login) *adminv1.User {
	at := timestamppb.New(l.At)
	return &adminv1.User{
		Provider:   l.Provider,
		Username:   l.Username,
		Subject:    l.Subject,
		CreatedAt:  at,
		LastLogin:  at,
		LoginCount: 1,
		Active:     true,
		Claims:     l.Claims, // only read: see Login.Claims
	}
}
