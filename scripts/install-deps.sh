#!/usr/bin/env bash
# Installs what building and testing ctseg needs on Debian/Ubuntu: gcc (cgo for wgpu-native),
# the Vulkan loader and Mesa's lavapipe (a CPU Vulkan driver, so GPU tests run anywhere), and
# Chromium for the browser end-to-end test, and the arm64 cross compiler with qemu-user (the
# NEON kernels' tests). Does nothing when everything is present.
set -euo pipefail
pkgs=(gcc libc6-dev libvulkan1 mesa-vulkan-drivers chromium ca-certificates dicom3tools gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
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
