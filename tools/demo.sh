#!/usr/bin/env bash
# `make demo`: the README's quick start on the simulated rig, typed as a user types it, in the
# workspace demo_out/ (recordings/, calib/, data/, runs/: docs/workspace.md). Only the sizes are
# small so it finishes in minutes on 2 CPU cores; override them with the env vars below.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
OUT=${DEMO_OUT:-demo_out}
SECONDS_PER_SESSION=${DEMO_SECONDS:-6}
TRAIN_MINUTES=${DEMO_TRAIN_MINUTES:-6}
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"

step() { printf '\n=== %s\n$ %s\n' "$1" "$2"; }
run() { step "$1" "${*:2}"; "${@:2}"; }

run "1/6 record three sessions (day, night, day)" rig record --duration "$SECONDS_PER_SESSION" --scenario day --seed 1 --quiet
run "1/6" rig record --duration "$SECONDS_PER_SESSION" --scenario night --seed 2 --quiet
run "1/6" rig record --duration "$SECONDS_PER_SESSION" --scenario day --seed 3 --quiet
run "2/6 calibrate from a blinking checkerboard" rig calibrate --checkerboard --quiet
run "3/6 build the RPEA dataset (whole sessions per split)" rpea build --split train --quiet
run "3/6" rpea build --split val --quiet
run "4/6 check it" rpea check data
run "5/6 train the compact CACD preset for ${TRAIN_MINUTES} minutes" cacd train --set "train.max_minutes=${TRAIN_MINUTES}"
run "6/6 evaluate the newest run on the val split (per-class table)" cacd eval
run "6/6 draw predictions of the val split" cacd predict --limit 6 --every 20

run_dir=$(ls -d runs/run_* | tail -1)
picture=$(ls "$run_dir"/predictions/*.png | head -1)
printf '\nDemo finished: the workspace is %s/ (recordings/, calib/, data/, runs/)\n' "$OUT"
printf 'Per-class IoU: above (also %s/%s/eval_val.json); confusion matrix: %s/%s/eval_val_confusion.png\n' \
  "$OUT" "$run_dir" "$OUT" "$run_dir"
printf 'A prediction overlay (RGB | events | prediction | ground truth): %s/%s\n' "$OUT" "$picture"
