#!/usr/bin/env bash
# N cases in one `ctseg batch` against the same N cases as N separate `ctseg segment` runs (a
# process each, as tools without a batch mode run a cohort): same CTs, model and settings, timed
# side by side REPEATS times, alternating which goes first. Prints every run, the medians, the
# seconds per case and the ratio, and how much of the batch's reading and preprocessing the GPU
# work hid (the sum of the cases' own seconds in status.csv against the batch's wall time).
#
# The cases alternate ../shared's example_ct_sm (NIfTI) and example_ct_dicom (a JPEG 2000 DICOM
# series), so reading is part of the work; CASES=nifti uses example_ct_sm only. Default model:
# the small golden SegResNet at 3 mm with 32³ windows (what the tests run; on lavapipe the
# bundle's network takes minutes per case).
#
# usage: scripts/bench_batch.sh [N [REPEATS [CTSEG_FLAGS...]]]     (after make build)
#   e.g. scripts/bench_batch.sh 6 5
#        CASES=nifti scripts/bench_batch.sh 6 5
#        scripts/bench_batch.sh 8 3 --weights model.pt --spacing 1.5     (on a GPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-6}
repeats=${2:-3}
shift $(($# > 2 ? 2 : $#))
shared=${CTSEG_SHARED:-../shared}
flags=("$@")
if ((${#flags[@]} == 0)); then
	flags=(--weights "$shared/golden/segresnet_small/model.pt" --spacing 3 --roi 32)
fi
ctseg=bin/ctseg
[ -x "$ctseg" ] || { echo "build first: make build" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
nifti=$(realpath "$shared/data/ct/example_ct_sm.nii.gz")
dicom=$(realpath "$shared/data/ct/example_ct_dicom")
inputs=()
echo "case_id,input" >"$tmp/manifest.csv"
for ((i = 0; i < n; i++)); do
	in=$nifti
	if ((i % 2)) && [ "${CASES:-mixed}" != nifti ]; then in=$dicom; fi
	inputs+=("$in")
	echo "case$i,$in" >>"$tmp/manifest.csv"
done
export CTSEG_TUNING="$tmp/no-tuning.json" # the default tiles for both
now() { date +%s.%N; }

run_batch() {
	rm -rf "$tmp/out"
	local t0 t1
	t0=$(now)
	"$ctseg" batch --manifest "$tmp/manifest.csv" --out "$tmp/out" "${flags[@]}" 2>"$tmp/batch.log" || {
		cat "$tmp/batch.log" >&2
		exit 1
	}
	t1=$(now)
	"$ctseg" batch summarize --out "$tmp/out" 2>/dev/null
	local own
	own=$(awk -F, 'NR > 1 { s += $4 } END { printf "%.2f", s }' "$tmp/out/status.csv")
	echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $own"
}

run_segments() {
	rm -rf "$tmp/seg"
	mkdir "$tmp/seg"
	local t0 t1 i
	t0=$(now)
	for i in "${!inputs[@]}"; do
		"$ctseg" segment --input "${inputs[$i]}" --output "$tmp/seg/$i.nii.gz" --stats "$tmp/seg/$i.csv" "${flags[@]}" 2>>"$tmp/seg.log" || {
			cat "$tmp/seg.log" >&2
			exit 1
		}
	done
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

kinds="alternating NIfTI example_ct_sm / DICOM example_ct_dicom"
if [ "${CASES:-mixed}" = nifti ]; then kinds="NIfTI example_ct_sm"; fi
echo "$n cases ($kinds), flags: ${flags[*]}"
echo "adapter: $("$ctseg" adapters 2>/dev/null | head -1 | cut -f2-)"
: >"$tmp/b" && : >"$tmp/s" && : >"$tmp/own" && : >"$tmp/ratio"
for ((r = 1; r <= repeats; r++)); do
	if ((r % 2)); then
		read -r b own < <(run_batch)
		s=$(run_segments)
	else
		s=$(run_segments)
		read -r b own < <(run_batch)
	fi
	echo "$b" >>"$tmp/b"
	echo "$s" >>"$tmp/s"
	echo "$own" >>"$tmp/own"
	ratio=$(awk -v a="$s" -v b="$b" 'BEGIN { print a / b }')
	echo "$ratio" >>"$tmp/ratio"
	printf "run %d: batch %.2f s (cases' own seconds summed: %.2f s), %d segment runs %.2f s, ratio %.2f\n" "$r" "$b" "$own" "$n" "$s" "$ratio"
done
mb=$(median <"$tmp/b")
ms=$(median <"$tmp/s")
mo=$(median <"$tmp/own")
mr=$(median <"$tmp/ratio")
awk -v r="$repeats" -v n="$n" -v mb="$mb" -v ms="$ms" -v mr="$mr" 'BEGIN {
	printf "median of %d: batch %.2f s = %.2f s per case; separate segment runs %.2f s = %.2f s per case; ratio of medians %.2fx, median of the runs'"'"' ratios %.2fx\n", r, mb, mb / n, ms, ms / n, ms / mb, mr }'
printf "overlap: the cases' own seconds sum to %.2f s in the batch's %.2f s wall time (medians)\n" "$mo" "$mb"
