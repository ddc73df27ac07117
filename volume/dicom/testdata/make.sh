#!/usr/bin/env bash
# Rebuilds the DCMTK-compressed test series from the uncompressed ones. The originals come from
# the test itself:   go test -run TestDCMTKEncodedSeries ./volume/dicom -args -regen
# then run this script from volume/dicom/testdata with DCMTK 3.6.7 (Debian: apt-get install dcmtk).
# Each folder below holds one series in one encoding; TestDCMTKEncodedSeries decodes them all.
set -euo pipefail
cd "$(dirname "$0")"
for s in s16 u12; do
  enc() { # enc FOLDER COMMAND...: compress every native file of $s into $s/FOLDER
    local dir=$s/$1; shift
    rm -rf "$dir"; mkdir -p "$dir"
    for f in "$s"/native/*.dcm; do "$@" "$f" "$dir/$(basename "$f")"; done
  }
  enc sv1 dcmcjpeg --encode-lossless-sv1                      # 1.2.840.10008.1.2.4.70
  for p in 2 3 4 5 6 7; do
    enc sv$p dcmcjpeg --encode-lossless --selection-value $p  # 1.2.840.10008.1.2.4.57
  done
  enc pt2 dcmcjpeg --encode-lossless --selection-value 1 --point-transform 2
  enc fragments dcmcjpeg --encode-lossless-sv1 --fragment-size 1 --offset-table-empty
  enc rle dcmcrle
done
