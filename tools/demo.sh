#!/usr/bin/env bash
# The whole pipeline on the simulated rig: record -> calibrate -> build -> train -> evaluate.
# Sizes and durations are small so it finishes in minutes on 2 CPU cores; override with env vars.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=${DEMO_OUT:-demo_out}
SECONDS_PER_SESSION=${DEMO_SECONDS:-6}
TRAIN_MINUTES=${DEMO_TRAIN_MINUTES:-4}
rm -rf "$OUT"
mkdir -p "$OUT"

step() { printf '\n=== %s\n' "$*"; }

step "1/5 record three simulated driving sessions (day, night, day)"
$BIN/rig record --sim --quiet --duration "$SECONDS_PER_SESSION" --scenario day --seed 1 --out "$OUT/sessions/day_01"
$BIN/rig record --sim --quiet --duration "$SECONDS_PER_SESSION" --scenario night --seed 2 --out "$OUT/sessions/night_01"
$BIN/rig record --sim --quiet --duration "$SECONDS_PER_SESSION" --scenario day --seed 3 --out "$OUT/sessions/day_02"

step "2/5 calibrate the simulated rig from a blinking checkerboard"
$BIN/rig calibrate --checkerboard --sim --out "$OUT/calib"

step "3/5 build the RPEA dataset (train: day_01 + night_01, val: day_02)"
cat > "$OUT/splits.yaml" <<YAML
train: [day_01, night_01]
val: [day_02]
YAML
for split in train val; do
  $BIN/rpea build --split "$split" --sessions "$OUT"/sessions/* --calib "$OUT/calib/calib.yaml" \
    --splits "$OUT/splits.yaml" --out "$OUT/rpea"
done
$BIN/rpea check "$OUT/rpea"

step "4/5 train the compact CACD preset for ${TRAIN_MINUTES} minutes"
$BIN/cacd train --data "$OUT/rpea" --out "$OUT/run" --set "train.max_minutes=${TRAIN_MINUTES}"

step "5/5 evaluate on the val split"
$BIN/cacd eval --checkpoint "$OUT/run" --data "$OUT/rpea" --split val

printf '\nDemo finished: everything is under %s/\n' "$OUT"
