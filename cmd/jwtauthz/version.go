package main

import (
	"context"
	"fmt"

	"github.com/jwtauthz/jwtauthz/internal/version"
)

// runVersion prints the version, the VCS revision and the Go version, as
// jwtauthz_build_info reports them.
func runVersion(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &exitError{code: 2, err: fmt.Errorf("version: unexpected argument %q", fs.Arg(0))}
	}
	v := version.Get()
	fmt.Fprintf(env.stdout, "jwtauthz %s\nrevision: %s\ngo: %s\n", v.Version, v.Revision, v.GoVersion)
	return nil
}
