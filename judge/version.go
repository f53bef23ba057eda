package judge

import (
	"runtime/debug"
	"sync"
)

// Version names this judge's build in receipts. make build and make images
// set it at link time (-X github.com/hackarena/hackarena/judge.Version=…,
// from git describe); otherwise it comes from the VCS stamp go build
// records, else "devel".
var Version string

var buildVersion = sync.OnceValue(func() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
})

// BuildVersion is Version, or what the build says of itself.
func BuildVersion() string { return buildVersion() }
