// Command jwtauthz is an Envoy/Istio external-authorization service that
// verifies bearer JWTs issued by another server and keeps a registry of the
// users it has seen. Run "jwtauthz help" for its commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err (unless it is a silent exit) and returns the process
// exit status: 0 for nil, the code of an *exitError, 2 otherwise.
func exitCode(err error, stderr interface{ Write([]byte) (int, error) }) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		if e.err != nil {
			fmt.Fprintf(stderr, "jwtauthz: %v\n", e.err)
		}
		return e.code
	}
	fmt.Fprintf(stderr, "jwtauthz: %v\n", err)
	return 2
}

// exitError carries a specific exit status out of run. A nil err means the
// command already printed what it had to say.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }
