package etcd

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
	"github.com/jwtauthz/jwtauthz/store/etcd/etcdtest"
)

// TestCreateNeverOverwritesAStoredUser: another replica stored the user a
// moment ago, and this replica has not heard of it yet but holds the id
// counter as it is now. The creating transaction's "user absent" guard
// alone stops it from writing the user again under a new id; without the
// guard the counter check passes and the record is overwritten.
func TestCreateNeverOverwritesAStoredUser(t *testing.T) {
	srv := etcdtest.Start(t)
	s, err := Open(Options{Endpoints: []string{srv.Endpoint()}, Prefix: "/guard/", RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	b := s.b

	// The other replica's creation: record, id index and counter.
	theirs := &adminv1.User{Id: 7, Provider: "p", Username: "alice", Active: true, LoginCount: 1}
	v, err := proto.Marshal(theirs)
	if err != nil {
		t.Fatal(err)
	}
	key := string(appendKey(nil, "p", "alice"))
	cli := srv.Client(t)
	if _, err := cli.Txn(ctx).Then(
		clientv3.OpPut(b.usersPrefix+key, string(v)),
		clientv3.OpPut(b.idsPrefix+idName(7), usersDir+key),
		clientv3.OpPut(b.lastIDKey, "7"),
	).Commit(); err != nil {
		t.Fatal(err)
	}
	// This replica's view of the counter is current; of the user, not.
	resp, err := cli.Get(ctx, b.lastIDKey)
	if err != nil {
		t.Fatal(err)
	}
	b.lastID, b.lastIDRev = 7, resp.Kvs[0].ModRevision

	mine := &adminv1.User{Provider: "p", Username: "alice", Active: true, LoginCount: 1}
	out, err := b.Create(ctx, []*adminv1.User{mine})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].New || out[0].User.GetId() != 7 {
		t.Errorf("Create = new %v, id %d; want the stored user 7, not a new one", out[0].New, out[0].User.GetId())
	}
	got, err := cli.Get(ctx, b.usersPrefix+key)
	if err != nil {
		t.Fatal(err)
	}
	var stored adminv1.User
	if err := proto.Unmarshal(got.Kvs[0].Value, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.GetId() != 7 {
		t.Errorf("stored record has id %d, want 7: the creation overwrote it", stored.GetId())
	}
}
