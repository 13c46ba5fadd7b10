// Package version says which jwtauthz this is: the release version (set
// at build time with -ldflags "-X
// github.com/jwtauthz/jwtauthz/internal/version.version=v1.2.3"), the VCS
// revision Go stamps into binaries built from a checkout, and the Go
// version. The version command and jwtauthz_build_info report it.
package version

import (
	"runtime"
	"runtime/debug"
)

// version is set by -ldflags -X; empty in a plain go build.
var version string

// Info is what a binary knows of its build.
type Info struct {
	Version   string // the release, or the module version, or "devel"
	Revision  string // VCS revision, "+dirty" when built from a modified tree; "unknown" without VCS stamping
	GoVersion string
}

// Get returns the build's Info.
func Get() Info {
	info := Info{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && info.Revision != "unknown" {
			info.Revision += "+dirty"
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	return info
}
