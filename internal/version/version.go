// Package version holds the version of this build of ctseg, set by the release build
// (go build -ldflags "-X ctseg/internal/version.Version=1.2.3"); "dev" otherwise. The static
// site's build id includes it, so every release is a new build for the page's service worker.
package version

// Version is the release this binary was built as.
var Version = "dev"
