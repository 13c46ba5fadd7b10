package bolt

import (
	"path/filepath"
	"testing"

	"github.com/jwtauthz/jwtauthz/store/storetest"
)

// TestSuite runs the behaviour every store shares (package storetest) on
// bbolt.
func TestSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "users.db")
		return func(t *testing.T) storetest.Store {
			t.Helper()
			e, err := Open(Options{Path: path})
			if err != nil {
				t.Fatalf("Open(%q): %v", path, err)
			}
			t.Cleanup(func() { _ = e.Close() })
			return e
		}
	})
}
