// Package version says which jwtauthz this is: the release version (set
// at build time with -ldflags "-X
// github.com/jwtauthz/jwtauthz/internal/version.version=v1.2.3"), the VCS
// revision (Go stamps it into binaries built from a checkout; -X
// ...version.revision=... otherwise), and the Go version. The version command and jwtauthz_build_info report it.
package version

import (
	"runtime"
	"runtime/debug"
)

// version and revision are set by -ldflags -X (the Dockerfile sets both,
// since a container build sees no .git); empty in a plain go build.
var version, revision string

// Info is what a binary knows of its build.
type Info struct {
	Version   string // the release, or the module version, or "devel"
	Revision  string // VCS revision, "+dirty" when built from a modified tree; "unknown" without VCS stamping
	GoVersion string
}

// Get returns the build's Info.
func Get() Info {
	info := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if revision == "" {
					info.Revision = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && revision == "" && info.Revision != "unknown" {
			info.Revision += "+dirty"
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}
