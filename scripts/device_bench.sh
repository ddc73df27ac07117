#!/bin/bash
# The benchmark run for a machine with a real GPU, in one go (BENCHMARKS.md records its
# figures). Needs only the ctseg binary and a Vulkan driver; no Go, no weights (random weights
# of the bundle's shape: timing does not depend on the values).
#
#   scripts/device_bench.sh [CTSEG [OUTDIR]]     defaults: bin/ctseg, bench-out
#
# Each step has a timeout so one hung step cannot eat the machine's time; the benches, tune
# and PyTorch add up to at most 540 s, inside one 10-minute call. Optional extras when
# present beside the binary: model.test / shaders.test (the GPU golden tests, built with
# `go test -c`), big_ct.nii.gz + weights.safetensors (a whole `ctseg segment`).
#
# For a machine without Go: `make device-kit` here puts the binary and the small golden
# checkpoint in bin/ and the Vulkan loader package in .gl/; carry both and run, in one call,
#
#   for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig;
#   export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json;
#   scripts/device_bench.sh bin/ctseg $OUT
#
# For the golden tests on the GPU too, `go test -c -o bin/model.test ./model/`, with
# CTSEG_SHARED set on the device to a copy of the ../shared folders they read
# (golden/segresnet_small and golden/sliding_window are 15 MB; golden/segresnet_full, 86 MB,
# only for the full-size cases).
#
# PyTorch on the same GPU (the ratio BENCHMARKS.md gives): when python3 ($PYTHON) has torch
# and $DIR/golden_small holds ../shared/golden/segresnet_small's model.pt, input.f32 and
# output.f32 (4 MB; the script first checks itself against that output), it runs
# scripts/pytorch_bench.py too. The device image's python3 has PyTorch.
set -u
CTSEG=${1:-bin/ctseg}
OUT=${2:-${OUT:-bench-out}}
DIR=$(dirname "$CTSEG")
mkdir -p "$OUT"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
export CTSEG_TUNING="$OUT/tuning.json" # starts absent: the first runs measure the defaults
step() { echo "== $1"; shift; timeout "$@" 2>&1 | tee -a "$OUT/log.txt"; }
command -v nvidia-smi >/dev/null && nvidia-smi -L

TILES=2x8x4,4x8x4c,8x8x4c,4x16x4c,8x8x2c,4x8x8c,8x4x4c,2x8x4/tn16,4x8x4c/tn16,2x8x4/ty2,8x8x4c/ty4,2x8x4p,4x8x4cp,8x8x4cp,8x8x4cp/ty8
B15=(--spacing 1.5) B3=(--spacing 3) TUNE=() PT=() R=5
if [ -n "${SMOKE:-}" ]; then # SMOKE=1: tiny sizes, to check the script itself on lavapipe
	B15=(--shape 24,24,24 --roi 16) B3=(--shape 20,20,20 --roi 16) TUNE=(--roi 16 --tiles 2x8x4,8x8x4c) PT=(--roi 16) R=1 TILES=2x8x4,8x8x4c
fi

# the window, per layer kind (GPU timestamps), end to end, and the timed end-to-end breakdown;
# the tile sweep compares the default with the contiguous-x variants, per window and per layer
step "bench 1.5 mm f16 + tiles" 150 "$CTSEG" bench --device gpu "${B15[@]}" --precision f16 --repeat $R \
	--tiles "$TILES" --json "$OUT/bench15_f16.json" --force
# the per-width choice for this GPU, recorded in $OUT/tuning.json, then the window with it
step "tune f16" 150 "$CTSEG" tune "${TUNE[@]}" --precision f16 --repeat $R
step "bench 1.5 mm f16, tuned" 45 "$CTSEG" bench --device gpu "${B15[@]}" --precision f16 --repeat $R --json "$OUT/bench15_f16_tuned.json" --force
step "bench 1.5 mm f32" 45 "$CTSEG" bench --device gpu "${B15[@]}" --precision f32 --repeat $R --json "$OUT/bench15_f32.json" --force
step "bench 3 mm f16" 30 "$CTSEG" bench --device gpu "${B3[@]}" --precision f16 --repeat $R --json "$OUT/bench3_f16.json" --force

G="$DIR/golden_small"
PY=${PYTHON:-python3} # the device image's python3 has PyTorch
if [ -f "$G/model.pt" ] && "$PY" -c 'import torch' 2>/dev/null; then
	step "pytorch, same GPU, f32 / TF32 / autocast" 120 env PYTHONUNBUFFERED=1 "$PY" "$(dirname "$0")/pytorch_bench.py" \
		--weights "$G/model.pt" --input "$G/input.f32" --output "$G/output.f32" --shape 24,40,32 \
		--repeat $R "${PT[@]}" --json "$OUT/pytorch.json"
fi
if [ -x "$DIR/model.test" ]; then
	step "golden GPU tests (model)" 300 "$DIR/model.test" -test.run 'TestGPUGolden|TestGPUUnseen' -test.v
fi
if [ -x "$DIR/shaders.test" ]; then
	step "shader tests" 120 "$DIR/shaders.test"
fi
if [ -f "$DIR/big_ct.nii.gz" ] && [ -f "$DIR/weights.safetensors" ]; then
	step "segment 512x512x400 at 1.5 mm, f16" 60 "$CTSEG" segment --device gpu --input "$DIR/big_ct.nii.gz" \
		--weights "$DIR/weights.safetensors" --output /tmp/ctseg_big_labels.nii.gz --force --verbose
fi
