#!/usr/bin/env bash
# Builds the release archives (README, "Release binaries"); `make release VERSION=X` runs it.
#
#   scripts/release.sh VERSION [OUT_DIR]      (OUT_DIR: dist/release)
#
# Cross-builds ctseg with cgo for linux/amd64, linux/arm64 and windows/amd64 with Debian's
# compilers (scripts/install-deps.sh installs them), then writes OUT_DIR/ctseg_VERSION_OS_ARCH.tar.gz
# (.zip for Windows), each holding the binary, README.md, LICENSE and THIRD_PARTY_NOTICES.txt,
# and OUT_DIR/SHA256SUMS. OUT_DIR is replaced whole, and only once everything is built.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
	echo "make release: $*" >&2
	exit "${code:-1}"
}

version=${1-}
out=${2:-dist/release}
# The Makefile checks VERSION first (one line, before anything runs); this repeats it for
# direct callers. VERSION names files, and "_" separates the name's fields.
code=2
[ -n "$version" ] || fail "VERSION is required, e.g. make release VERSION=1.0.0"
[[ "$version" =~ ^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$ ]] ||
	fail "VERSION \"$version\" names files: use up to 64 letters, digits and . + - only, starting with a letter or digit"
code=1

# OUT_DIR is removed before the new release goes there: only ever one that holds a release.
if [ -e "$out" ] || [ -L "$out" ]; then
	[ -d "$out" ] && [ ! -L "$out" ] || fail "$out is not a folder of release archives: not replacing it"
	for f in "$out"/* "$out"/.[!.]*; do
		[ -e "$f" ] || continue
		case ${f##*/} in
		ctseg_*.tar.gz | ctseg_*.zip | SHA256SUMS) ;;
		*) fail "$out holds ${f##*/}, which no release wrote: not replacing it (choose another RELEASE_DIR)" ;;
		esac
	done
fi

# What a Mac build needs is in README.md, and printed from there so the two never differ.
macos=$(awk '/^\*\*macOS\.\*\*/{p=1} p&&/^$/{exit} p' README.md)
[ -n "$macos" ] || fail "README.md lost its **macOS.** paragraph (Release binaries)"

# GOOS/GOARCH and the C cross compiler that links wgpu-native's static library for it; the
# Debian package in brackets. The triplet names exist on Debian whatever the host. MinGW's win32
# threads variant, named so that the alternatives' choice cannot bring in posix threads, whose
# libwinpthread-1.dll Windows does not have.
targets=(
	"linux amd64 x86_64-linux-gnu-gcc [gcc]"
	"linux arm64 aarch64-linux-gnu-gcc [gcc-aarch64-linux-gnu libc6-dev-arm64-cross]"
	"windows amd64 x86_64-w64-mingw32-gcc-win32 [gcc-mingw-w64-x86-64-win32]"
)
command -v go >/dev/null || fail "go is not installed (Go 1.26: https://go.dev/dl/)"
for t in "${targets[@]}"; do
	read -r _ _ cc pkgs <<<"$t"
	command -v "$cc" >/dev/null || fail "the C cross compiler $cc is missing: run scripts/install-deps.sh (Debian packages ${pkgs//[\[\]]/})"
done
# The Windows notices carry the runtime's licence from the compiler's own package.
mingw_copyright=/usr/share/doc/mingw-w64-x86-64-dev/copyright
[ -f "$mingw_copyright" ] || fail "$mingw_copyright is missing: run scripts/install-deps.sh (Debian package mingw-w64-x86-64-dev)"

# The commit for `ctseg version`, where the go command cannot stamp it (see native/cli/version.go).
commit=unknown
if rev=$(git rev-parse HEAD 2>/dev/null); then
	commit=$rev
	[ -z "$(git status --porcelain 2>/dev/null)" ] || commit=$rev-dirty
fi
# Every archive entry gets the commit's time (or SOURCE_DATE_EPOCH): the same tree gives the same
# archives.
mtime=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

stage=$(mktemp -d "${TMPDIR:-/tmp}/ctseg-release.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# The binary embeds the browser app: build the wasm first, once for all three, stripped as the
# binaries are.
echo "release $version: wasm"
GOOS=js GOARCH=wasm go build -trimpath -ldflags "-s -w" -o viewer/static/gen/ctseg.wasm ./wasm
cp "$(go env GOROOT)/lib/wasm/wasm_exec.js" viewer/static/gen/wasm_exec.js
go build -o "$stage/notices" ./scripts/notices
go build -o "$stage/archive" ./scripts/archive

# -trimpath keeps this machine's paths out of the binaries; -s -w drop the symbol table and
# DWARF (linux/amd64: 40.7 MB to 32.4 MB). Go's build cache keeps each platform's compiled
# packages between runs, so a second release mostly links.
ldflags="-s -w -X ctseg/internal/version.Version=$version -X ctseg/internal/version.Commit=$commit"
mkdir "$stage/out"
archives=()
for t in "${targets[@]}"; do
	read -r goos goarch cc _ <<<"$t"
	name=ctseg_${version}_${goos}_${goarch}
	dir=$stage/$name
	exe=ctseg
	ext=tar.gz
	extra=()
	if [ "$goos" = windows ]; then
		exe=ctseg.exe
		ext=zip
		extra=(-mingw-copyright "$mingw_copyright")
	fi
	echo "release $version: $goos/$goarch"
	mkdir "$dir"
	GOOS=$goos GOARCH=$goarch CGO_ENABLED=1 CC=$cc \
		go build -trimpath -ldflags "$ldflags" -o "$dir/$exe" ./native/cmd/ctseg
	"$stage/notices" -binary "$dir/$exe" -version "$version" -o "$dir/THIRD_PARTY_NOTICES.txt" "${extra[@]}"
	"$stage/archive" -o "$stage/out/$name.$ext" -mtime "$mtime" \
		"$dir/$exe" README.md LICENSE "$dir/THIRD_PARTY_NOTICES.txt"
	archives+=("$name.$ext")
done
(cd "$stage/out" && sha256sum "${archives[@]}" >SHA256SUMS)

# Into place by renames beside OUT_DIR (a move from $TMPDIR may be a copy across file systems,
# which an interruption would leave half done): the old release aside, the new one in, the old
# one away.
mkdir -p "$(dirname "$out")"
near=$(mktemp -d "$(dirname "$out")/.ctseg-release.XXXXXX")
# Whatever stops it between the renames, the old release is put back rather than removed.
trap '[ -e "$out" ] || [ ! -e "$near/old" ] || mv "$near/old" "$out"; rm -rf "$stage" "$near"' EXIT
mv "$stage/out" "$near/new"
[ ! -e "$out" ] || mv "$out" "$near/old"
mv "$near/new" "$out"
ls -l "$out"
echo
echo "Not built: macOS (it needs Apple's SDK, which is not on this machine)."
echo "$macos"
