// Package version holds what the release build stamps into ctseg (go build -ldflags "-X
// ctseg/internal/version.Version=1.2.3 -X ctseg/internal/version.Commit=..."; see
// scripts/release.sh). `ctseg version` prints them, and the static site's build id includes the
// version, so every release is a new build for the page's service worker.
package version

var (
	// Version is the release this binary was built as ("dev" for any other build).
	Version = "dev"
	// Commit is git's HEAD ("-dirty" when the tree had changes), for where the go command
	// stamps no revision (a git worktree, whose .git is a file it does not recognise, or
	// GOFLAGS=-buildvcs=false).
	Commit = ""
)
