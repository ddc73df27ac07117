#!/usr/bin/env bash
# Installs what building and testing ctseg needs on Debian/Ubuntu: gcc (cgo for wgpu-native),
# the Vulkan loader and Mesa's lavapipe (a CPU Vulkan driver, so GPU tests run anywhere),
# Chromium for the browser end-to-end tests (and python3, whose http.server stands for a static
# host that knows nothing of ctseg), Slurm with munge for the test of the Slurm array (deploy/;
# it starts its own daemons), and for `make release` and its test the C cross compilers
# (linux/arm64, also for the NEON kernels' tests; windows/amd64 with win32 threads, so no MinGW
# DLL is needed) with qemu-user and wine to run what they build. Does nothing when everything is present.
set -euo pipefail
pkgs=(gcc libc6-dev libvulkan1 mesa-vulkan-drivers chromium ca-certificates dicom3tools python3
	slurmctld slurmd slurm-client munge
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-mingw-w64-x86-64-win32 qemu-user wine wine64)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "installing: ${missing[*]}"
	sudo=""
	if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null; then
	echo "Go 1.26 is required (https://go.dev/dl/)" >&2
	exit 1
fi
