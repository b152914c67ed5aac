package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3"; a build from a checkout says "devel".
var version = ""

// versionLine says which Herald this is: release, commit (from the build's
// VCS stamp) and the Go that built it.
func versionLine() string {
	v, commit, when, dirty := version, "unknown", "", ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				when = " " + s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = ", modified"
				}
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	return fmt.Sprintf("herald %s (commit %s%s%s) %s %s/%s", v, commit, when, dirty, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
