// Package bolt keeps jwtauthz's users in a bbolt file: the store.Backend
// of one jwtauthz process, with no other infrastructure.
//
// The file has two buckets: "users" maps a user key (see appendKey) to its
// adminv1.User record, proto-binary-encoded; "ids" maps a big-endian id to
// the user key, for paging by id, and its sequence hands out the ids. One
// process may open the file at a time.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store"
)

const defaultOpenTimeout = 2 * time.Second

var (
	bucketUsers = []byte("users")
	bucketIDs   = []byte("ids")
)

// Options configure Open.
type Options struct {
	// Path is the bbolt file; it is created with mode 0600 when missing.
	Path string
	// OpenTimeout bounds the wait for the file lock (bbolt.Options.Timeout),
	// so that a second process gets a clear error rather than a hang.
	// Zero means 2s.
	OpenTimeout time.Duration
	// FlushInterval is the write-behind period (store.Options).
	FlushInterval time.Duration
	// Logger receives write-behind trouble; nil discards it.
	Logger *slog.Logger
}

// backend is the store.Backend on one bbolt file.
type backend struct {
	path string
	db   *bbolt.DB
}

// lockTimeoutError explains bbolt's bare "timeout" when the file is locked.
type lockTimeoutError struct{ err error }

func (e lockTimeoutError) Error() string {
	return e.err.Error() + " (is another jwtauthz process using it?)"
}

func (e lockTimeoutError) Unwrap() error { return e.err }

// Open opens or creates the store at opts.Path, loads every user's hot
// state into memory and returns the store. Close releases the file.
func Open(opts Options) (*store.Engine, error) {
	e, _, err := open(opts)
	return e, err
}

// open is Open, also returning the backend for this package's tests.
func open(opts Options) (*store.Engine, *backend, error) {
	if opts.Path == "" {
		return nil, nil, errors.New("open store: empty path")
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = defaultOpenTimeout
	}
	db, err := bbolt.Open(opts.Path, 0o600, &bbolt.Options{Timeout: opts.OpenTimeout})
	if errors.Is(err, bbolt.ErrTimeout) {
		err = lockTimeoutError{err}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open store %q: %w", opts.Path, err)
	}
	b := &backend{path: opts.Path, db: db}
	recs, rev, err := b.load()
	if err != nil {
		_ = db.Close() // the load error is the one worth reporting
		return nil, nil, fmt.Errorf("open store %q: %w", opts.Path, err)
	}
	e := store.New(b, store.Options{FlushInterval: opts.FlushInterval, Logger: opts.Logger})
	for _, rec := range recs {
		e.Apply(rec, rev)
	}
	return e, b, nil
}

// load creates the buckets and reads every record, as of the revision of
// that transaction.
func (b *backend) load() (recs []*adminv1.User, rev int64, err error) {
	err = b.db.Update(func(tx *bbolt.Tx) error {
		rev = int64(tx.ID())
		if _, err := tx.CreateBucketIfNotExists(bucketIDs); err != nil {
			return fmt.Errorf("create bucket %q: %w", bucketIDs, err)
		}
		users, err := tx.CreateBucketIfNotExists(bucketUsers)
		if err != nil {
			return fmt.Errorf("create bucket %q: %w", bucketUsers, err)
		}
		return users.ForEach(func(k, v []byte) error {
			rec, err := decode(v)
			if err != nil {
				return fmt.Errorf("user %x: %w", k, err)
			}
			recs = append(recs, rec)
			return nil
		})
	})
	return recs, rev, err
}

// Create writes the new users of recs in one transaction: one commit, two
// fsyncs, however many users.
func (b *backend) Create(_ context.Context, recs []*adminv1.User) ([]store.Created, error) {
	out := make([]store.Created, len(recs))
	for i, rec := range recs {
		// A record that cannot be encoded (a name that is not UTF-8) fails
		// alone, before it takes an id.
		if _, err := proto.Marshal(rec); err != nil {
			out[i].Err = fmt.Errorf("encode user: %w", err)
		}
	}
	err := b.db.Update(func(tx *bbolt.Tx) error {
		rev := int64(tx.ID())
		users, ids := tx.Bucket(bucketUsers), tx.Bucket(bucketIDs)
		for i, rec := range recs {
			if out[i].Err != nil {
				continue
			}
			key := appendKey(nil, rec.GetProvider(), rec.GetUsername())
			if v := users.Get(key); v != nil {
				existing, err := decode(v)
				if err != nil {
					out[i].Err = fmt.Errorf("existing record: %w", err)
					continue
				}
				out[i] = store.Created{User: existing, Rev: rev}
				continue
			}
			id, err := ids.NextSequence()
			if err != nil {
				return fmt.Errorf("next id: %w", err)
			}
			rec.Id = id
			v, err := proto.Marshal(rec)
			if err != nil {
				return fmt.Errorf("encode user %d: %w", id, err)
			}
			if err := users.Put(key, v); err != nil {
				return fmt.Errorf("put user %d: %w", id, err)
			}
			if err := ids.Put(appendID(nil, id), key); err != nil {
				return fmt.Errorf("put id %d: %w", id, err)
			}
			out[i] = store.Created{User: rec, Rev: rev, New: true}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Write merges the pending state into the records, all in one
// transaction: it writes all of ps or none.
func (b *backend) Write(_ context.Context, ps []store.Pending) (int, error) {
	err := b.db.Update(func(tx *bbolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		for i := range ps {
			p := &ps[i]
			key := appendKey(nil, p.Provider, p.Username)
			v := users.Get(key)
			if v == nil {
				continue // gone: its pending state goes with it
			}
			rec, err := decode(v)
			if err != nil {
				return fmt.Errorf("user %q of provider %q: %w", p.Username, p.Provider, err)
			}
			p.Apply(rec)
			if v, err = proto.Marshal(rec); err != nil {
				return fmt.Errorf("encode user %d: %w", rec.GetId(), err)
			}
			if err := users.Put(key, v); err != nil {
				return fmt.Errorf("put user %d: %w", rec.GetId(), err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(ps), nil
}

// Get returns one record.
func (b *backend) Get(_ context.Context, provider, username string) (*adminv1.User, error) {
	var rec *adminv1.User
	err := b.db.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketUsers).Get(appendKey(nil, provider, username))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		rec, err = decode(v)
		return err
	})
	return rec, err
}

// List pages through the ids bucket.
func (b *backend) List(ctx context.Context, provider string, afterID uint64, limit int) ([]*adminv1.User, error) {
	var prefix []byte
	if provider != "" {
		prefix = appendKey(nil, provider, "")
	}
	var out []*adminv1.User
	err := b.db.View(func(tx *bbolt.Tx) error {
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
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// SetActive changes the record in one transaction.
func (b *backend) SetActive(_ context.Context, provider, username string, active bool) (*adminv1.User, int64, error) {
	key := appendKey(nil, provider, username)
	var rec *adminv1.User
	var rev int64
	err := b.db.Update(func(tx *bbolt.Tx) error {
		rev = int64(tx.ID())
		users := tx.Bucket(bucketUsers)
		v := users.Get(key)
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		if rec, err = decode(v); err != nil {
			return err
		}
		rec.Active = active
		if v, err = proto.Marshal(rec); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		return users.Put(key, v)
	})
	return rec, rev, err
}

// Close closes the file.
func (b *backend) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close %q: %w", b.path, err)
	}
	return nil
}

// decode unmarshals a record read inside a transaction into a new User,
// which no longer refers to v (bytes from Get live only inside the
// transaction).
func decode(v []byte) (*adminv1.User, error) {
	if v == nil {
		return nil, store.ErrNotFound
	}
	rec := new(adminv1.User)
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return rec, nil
}

// appendKey appends the file's key of (provider, username) to dst: the
// length of provider as a uvarint, provider, then username. The length
// prefix makes the key unambiguous for any bytes in either part ("a","bc"
// and "ab","c" differ), and all of one provider's keys share a prefix.
func appendKey(dst []byte, provider, username string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(provider)))
	dst = append(dst, provider...)
	return append(dst, username...)
}

// appendID appends id big-endian, so that keys of the ids bucket sort by id.
func appendID(dst []byte, id uint64) []byte {
	return binary.BigEndian.AppendUint64(dst, id)
}
