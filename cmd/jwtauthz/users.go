package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/jwtauthz/jwtauthz/proto/jwtauthz/admin/v1"
)

// tokenEnv names the environment variable that holds the admin token when
// --token is absent.
const tokenEnv = "JWTAUTHZ_TOKEN"

// defaultProviderName is the name a provider gets when the config gives
// none; get, deactivate and activate use it when --provider is absent.
const defaultProviderName = "default"

const usersUsage = `Usage: jwtauthz users <list | get NAME | deactivate NAME | activate NAME> --addr HOST:PORT [flags]

Talks to the admin API of a running "jwtauthz serve" (its admin.listen), in
plaintext gRPC. Flags may come before or after the subcommand and NAME.

  list             every user, ordered by id (all pages)
  get NAME         one user
  deactivate NAME  deny NAME from the next request on (HTTP 403), even with a valid token
  activate NAME    allow NAME again

NAME is a username within --provider. The caller authenticates with a bearer
JWT that the service's providers verify and that holds admin.require_claims:
--token, or else the environment variable JWTAUTHZ_TOKEN (better: a command
line is visible to other users of the machine).

Exit status: 0 done; 1 refused by the server (NOT_FOUND, PERMISSION_DENIED,
UNAUTHENTICATED), with its message; 2 usage or connection error.

Flags:
`

// usersOptions is a parsed users command line.
type usersOptions struct {
	verb, name string
	addr       string
	token      string
	provider   string
	output     string
	pageSize   int
	timeout    time.Duration
}

// runUsers lists, shows, deactivates and activates users through the admin
// API.
func runUsers(ctx context.Context, env *cliEnv, args []string) error {
	o, err := parseUsersArgs(env, args)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("users: --addr %s: %w", o.addr, err)}
	}
	defer conn.Close()
	client := adminv1.NewUserAdminClient(conn)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+o.token)

	call := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		if err := f(ctx); err != nil {
			return usersCallError(o, err)
		}
		return nil
	}

	if o.verb == "list" {
		var users []*adminv1.User
		req := &adminv1.ListUsersRequest{PageSize: int32(o.pageSize), Provider: o.provider}
		for {
			var resp *adminv1.ListUsersResponse
			err := call(func(ctx context.Context) (err error) {
				resp, err = client.ListUsers(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			users = append(users, resp.GetUsers()...)
			next := resp.GetNextPageToken()
			if next == "" {
				break
			}
			if next == req.GetPageToken() {
				return &exitError{code: 2, err: errors.New("users list: the server returned the same page token twice")}
			}
			req.PageToken = next
		}
		return printUsers(env.stdout, o.output, users, true)
	}

	var u *adminv1.User
	err = call(func(ctx context.Context) (err error) {
		switch o.verb {
		case "get":
			u, err = client.GetUser(ctx, &adminv1.GetUserRequest{Provider: o.provider, Username: o.name})
		default:
			u, err = client.SetUserActive(ctx, &adminv1.SetUserActiveRequest{
				Provider: o.provider, Username: o.name, Active: o.verb == "activate",
			})
		}
		return err
	})
	if err != nil {
		return err
	}
	return printUsers(env.stdout, o.output, []*adminv1.User{u}, false)
}

// parseUsersArgs parses the command line; every error is a usage error
// (exit status 2).
func parseUsersArgs(env *cliEnv, args []string) (*usersOptions, error) {
	fs := newFlagSet(env, "users", "")
	fs.Usage = func() {
		fmt.Fprint(env.stderr, usersUsage)
		fs.PrintDefaults()
	}
	o := &usersOptions{}
	fs.StringVar(&o.addr, "addr", "", "admin API address HOST:PORT (serve's admin.listen); required")
	fs.StringVar(&o.token, "token", "", "bearer JWT of the caller (default $"+tokenEnv+")")
	fs.StringVar(&o.provider, "provider", "", `provider of the user; get, deactivate and activate default to "`+defaultProviderName+`", list to every provider`)
	fs.StringVar(&o.output, "o", "table", "output format: table or json (protojson: an array for list, an object otherwise)")
	fs.IntVar(&o.pageSize, "page-size", 0, "users per ListUsers call (default the server's: 100; at most 1000)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of each call")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}

	usage := func(format string, a ...any) error {
		return &exitError{code: 2, err: fmt.Errorf("users: "+format+` (see "jwtauthz users -h")`, a...)}
	}
	if len(pos) == 0 {
		return nil, usage("missing subcommand: list, get, deactivate or activate")
	}
	o.verb = pos[0]
	switch o.verb {
	case "list":
		if len(pos) > 1 {
			return nil, usage("list takes no NAME, got %q", pos[1:])
		}
	case "get", "deactivate", "activate":
		if len(pos) != 2 || pos[1] == "" {
			return nil, usage("%s takes exactly one NAME, got %d arguments", o.verb, len(pos)-1)
		}
		o.name = pos[1]
		if o.provider == "" {
			o.provider = defaultProviderName
		}
	default:
		return nil, usage("unknown subcommand %q: want list, get, deactivate or activate", o.verb)
	}
	if o.addr == "" {
		return nil, usage("--addr is required")
	}
	if o.output != "table" && o.output != "json" {
		return nil, usage("-o %q: want table or json", o.output)
	}
	if o.pageSize < 0 {
		return nil, usage("--page-size must be 0 (the server's default) or more, got %d", o.pageSize)
	}
	o.pageSize = min(o.pageSize, math.MaxInt32) // the server caps it far lower
	if o.timeout <= 0 {
		return nil, usage("--timeout must be positive, got %v", o.timeout)
	}
	if o.token == "" {
		o.token = env.getenv(tokenEnv)
	}
	o.token = strings.TrimSpace(o.token)
	if o.token == "" {
		return nil, usage("no token: pass --token or set %s", tokenEnv)
	}
	return o, nil
}

// parseInterleaved parses flags that may come before, between and after
// the positional arguments, which it returns. After "--" everything is
// positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// usersCallError turns a failed call into the exit status: 1 when the
// server refused (no such user, no rights, no valid token), 2 otherwise.
func usersCallError(o *usersOptions, err error) error {
	what := "users " + o.verb
	if o.name != "" {
		what += " " + strconv.Quote(o.name)
	}
	s, _ := status.FromError(err)
	switch s.Code() {
	case codes.NotFound, codes.PermissionDenied, codes.Unauthenticated:
		return &exitError{code: 1, err: fmt.Errorf("%s: %s: %s", what, s.Code(), s.Message())}
	case codes.DeadlineExceeded:
		return &exitError{code: 2, err: fmt.Errorf("%s: no answer from %s within %v", what, o.addr, o.timeout)}
	case codes.Unavailable:
		return &exitError{code: 2, err: fmt.Errorf("%s: cannot reach the admin API at %s: %s", what, o.addr, s.Message())}
	}
	return &exitError{code: 2, err: fmt.Errorf("%s: %s: %s", what, s.Code(), s.Message())}
}

// printUsers writes users as a table or as protojson: an array when list
// is set, else the one user as an object.
func printUsers(w io.Writer, format string, users []*adminv1.User, list bool) error {
	if format == "json" {
		mo := protojson.MarshalOptions{EmitUnpopulated: true}
		raws := make([]json.RawMessage, len(users))
		for i, u := range users {
			b, err := mo.Marshal(u)
			if err != nil {
				return fmt.Errorf("encode user %d: %w", u.GetId(), err)
			}
			raws[i] = b
		}
		var v any = raws
		if !list {
			v = raws[0]
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encode users: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROVIDER\tUSERNAME\tACTIVE\tLOGINS\tLAST LOGIN\tCREATED")
	for _, u := range users {
		active := "yes"
		if !u.GetActive() {
			active = "no"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", u.GetId(), u.GetProvider(), u.GetUsername(),
			active, u.GetLoginCount(), formatTime(u.GetLastLogin()), formatTime(u.GetCreatedAt()))
	}
	return tw.Flush()
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}
