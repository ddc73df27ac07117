#!/usr/bin/env bash
# Rebuilds the DCMTK-compressed test files from uncompressed ones. The originals come from
# the test itself:   go test -run TestDCMTKEncodedSeries ./volume/dicom -args -regen
# then run this script with DCMTK 3.6.7 (Debian: apt-get install dcmtk).
# Each folder below s16/ and u12/ holds one series in one encoding; TestDCMTKEncodedSeries
# decodes them all.
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
  enc jls dcmcjpls --encode-lossless                          # 1.2.840.10008.1.2.4.80
  enc jls_params dcmcjpls --encode-lossless --threshold1 5 --threshold2 30 --threshold3 200 --reset 16
  # Near-lossless (dcmcjpls refuses it for signed pixels) is lossy: the reference is DCMTK's
  # own decoding of it.
  if [ $s = u12 ]; then
    enc jls_near2 dcmcjpls --encode-nearlossless --max-deviation 2   # 1.2.840.10008.1.2.4.81
    rm -rf "$s/jls_near2_dcmtk"; mkdir -p "$s/jls_near2_dcmtk"
    for f in "$s"/jls_near2/*.dcm; do dcmdjpls "$f" "$s/jls_near2_dcmtk/$(basename "$f")"; done
  fi
done
# bench/: a real 512x512 slice (the 11th of ../shared/data/ct/example_ct_dicom, written
# uncompressed and as PGM by -regen) as JPEG-LS, lossless JPEG and HTJ2K, for
# BenchmarkDecodeSlice and TestRealSliceCodecs.
dcmcjpls bench/ct512_native.dcm bench/ct512_jls.dcm
dcmcjpeg bench/ct512_native.dcm bench/ct512_jpegll.dcm
rm bench/ct512_native.dcm
# and as lossless codestreams by encoders independent of the decoder ctseg uses, which the test
# wraps in DICOM: HTJ2K (Part 15) by OpenJPH 0.9 (Debian: openjph-tools), once plain and once
# with 128x128 precincts in PCRL order, and JPEG 2000 with precincts in CPRL order by
# OpenJPEG 2.5 (Debian: libopenjp2-tools).
ojph_compress -i bench/ct512.pgm -o bench/ct512_htj2k.j2c -reversible true
ojph_compress -i bench/ct512.pgm -o bench/ct512_htj2k_prec.j2c -reversible true -precincts '{128,128}' -prog_order PCRL
opj_compress -i bench/ct512.pgm -o bench/ct512_j2k_prec.j2k -c '[128,128]' -p CPRL
# signed: HU + 32768 encoded unsigned (the level shift subtracts 32768 again), then SIZ's Ssiz
# byte (offset 42) set to 0x8F, signed 16-bit, so the samples are the HU themselves
ojph_compress -i bench/ct512_s16.pgm -o bench/ct512_htj2k_s16.j2c -reversible true
printf '\x8f' | dd of=bench/ct512_htj2k_s16.j2c bs=1 seek=42 conv=notrunc status=none
rm bench/ct512.pgm bench/ct512_s16.pgm
