"""Every command on bad input: one line `Error: ...`, exit 1 (runtime) or 2 (usage), no traceback,
and nothing left behind (issue 16; README, "Errors").

The matrix runs `rig`, `rpea` and `cacd` in-process (click's CliRunner) in an empty folder of its
own, so any output a failed command would leave shows up in a before/after listing of that
folder (and of the inputs' folder). Inputs: a text file, an empty file, random bytes, an empty
folder, a missing path, an HDF5 file of the wrong layout, broken and empty YAML, a truncated
calib.yaml, checkpoint, event recording and dataset file, a dataset of text files, and a file no
one may read (skipped as root, who reads anyway); valid ones where a command needs one good input
beside the bad one: a short simulated session, a tiny synthetic dataset and an untrained checkpoint.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from common.clierrors import DEBUG_ENV, CommandGroup, Number, describe


@dataclass(frozen=True)
class Case:
    id: str
    prog: str  # rig | rpea | cacd
    args: str  # shlex-split after the placeholders are filled in
    code: int | None = None  # the exact exit code expected (None: 1 or 2)
    says: tuple[str, ...] = ()  # text the error line holds (a file name, an option)
    never: tuple[str, ...] = ()  # text the output must not hold
    unreadable: bool = False  # needs a file no one may read (skipped as root)


def C(id: str, prog: str, args: str, code: int | None = None, says: str | tuple[str, ...] = (),
      never: str | tuple[str, ...] = (), unreadable: bool = False) -> Case:
    says = (says,) if isinstance(says, str) else says
    never = (never,) if isinstance(never, str) else never
    return Case(id, prog, args, code, tuple(says), tuple(never), unreadable)


REC = "record --sim --duration 0.1 --out S --quiet"  # a short simulated recording into S
CAL = "calibrate --checkerboard --quiet --out C"

CASES = [
    # --- rig record: the cases a user measured, and their neighbours
    C("record-drop-frames-letters", "rig", f"{REC} --drop-frames a,b", 2, "--drop-frames"),
    C("record-drop-frames-negative", "rig", f"{REC} --drop-frames=-3", 2, "--drop-frames"),
    C("record-incomplete-frames-empty", "rig", f"{REC} --incomplete-frames ,", 2,
      "--incomplete-frames"),
    C("record-duration-negative", "rig", "record --sim --duration -1 --out S", 2, "--duration"),
    C("record-duration-zero", "rig", "record --sim --duration 0 --out S", 2, "--duration"),
    C("record-duration-nan", "rig", "record --sim --duration nan --out S", 2, "--duration"),
    C("record-duration-inf", "rig", "record --sim --duration inf --out S", 2, "--duration"),
    C("record-duration-huge", "rig", "record --sim --duration 1e12 --out S --quiet", 1,
      "disk space"),  # found out after the rig opened: the session folder is taken back
    C("record-duration-text", "rig", "record --sim --duration abc --out S", 2, "--duration"),
    C("record-rate-zero", "rig", f"{REC} --rate 0", 2, "--rate"),
    C("record-exposure-negative", "rig", f"{REC} --exposure-us=-5", 2, "--exposure-us"),
    C("record-views-zero", "rig", "record --sim --calibration --views 0 --out S", 2, "--views"),
    C("record-hardware-no-rig-yaml", "rig", "record --hardware --duration 0.1 --out S", 1,
      ("rig.yaml", "--rig-config")),
    C("record-hardware-empty-rig-yaml", "rig",
      "record --hardware --rig-config {empty_yaml} --duration 0.1 --out S", 1, "empty.yaml"),
    C("record-hardware-garbage-rig-yaml", "rig",
      "record --hardware --rig-config {garbage_yaml} --duration 0.1 --out S", 1, "garbage.yaml"),
    C("record-hardware-binary-rig-yaml", "rig",
      "record --hardware --rig-config {garbage} --duration 0.1 --out S", 1, "garbage.bin"),
    C("record-hardware-text-rig-yaml", "rig",
      "record --hardware --rig-config {text} --duration 0.1 --out S", 1, "text.txt"),
    C("record-rig-config-folder", "rig", "record --hardware --rig-config {dir} --out S", 2,
      "--rig-config"),
    C("record-rig-config-missing", "rig", "record --hardware --rig-config {missing} --out S", 2,
      "--rig-config"),
    C("record-sim-ignores-rig-config", "rig", f"{REC} --rig-config {{garbage_yaml}}", 2,
      "--rig-config"),
    C("record-out-is-a-file", "rig", "record --sim --duration 0.1 --out {text} --quiet", 2, "--out"),
    # --- rig record --preview (the live page): refused before anything is recorded
    C("record-preview-port-negative", "rig", f"{REC} --preview --preview-port=-1", 2, "--preview-port"),
    C("record-preview-port-huge", "rig", f"{REC} --preview --preview-port 70000", 2, "--preview-port"),
    C("record-preview-port-text", "rig", f"{REC} --preview --preview-port http", 2, "--preview-port"),
    C("record-preview-port-without-preview", "rig", f"{REC} --preview-port 9000", 2, "--preview-port"),
    C("record-calib-without-preview", "rig", f"{REC} --calib {{calib}}", 2, "--calib"),
    C("record-preview-calib-garbage", "rig", f"{REC} --preview --preview-port 0 --calib {{garbage_yaml}}",
      1, "garbage.yaml"),
    C("record-preview-calib-binary", "rig", f"{REC} --preview --preview-port 0 --calib {{garbage}}", 1,
      "garbage.bin"),
    C("record-preview-calib-truncated", "rig",
      f"{REC} --preview --preview-port 0 --calib {{calib_trunc}}", 1, "calib_trunc.yaml"),
    C("record-preview-calib-missing", "rig", f"{REC} --preview --calib {{missing}}", 2, "--calib"),
    C("record-preview-host-not-here", "rig",
      f"{REC} --preview --preview-port 0 --preview-host 192.0.2.1", 1, "--preview-host"),
    C("record-hardware-unreadable-rig-yaml", "rig",
      "record --hardware --rig-config {unreadable} --duration 0.1 --out S", 1, "unreadable",
      unreadable=True),
    # --- rig calibrate
    C("calibrate-screen-text", "rig", "calibrate --show-pattern --screen abc", 2, "--screen",
      never="invalid literal"),
    C("calibrate-screen-zero", "rig", "calibrate --show-pattern --screen 0x0", 2, "--screen"),
    C("calibrate-square-negative", "rig", "calibrate --show-pattern --square-mm -25", 2,
      ("--square-mm", "mm"), never="0.025"),
    C("calibrate-square-nan", "rig", "calibrate --show-pattern --square-mm nan", 2, "--square-mm"),
    C("calibrate-pattern-text", "rig", f"{CAL} --pattern axb --session {{session}}", 2, "--pattern"),
    C("calibrate-views-zero", "rig", f"{CAL} --sim --views 0", 2, "--views"),
    C("calibrate-max-depth-negative", "rig", f"{CAL} --sim --max-depth-m -1", 2, "--max-depth-m"),
    C("calibrate-session-empty-folder", "rig", f"{CAL} --session {{dir}}", 1, "dir"),
    C("calibrate-session-is-a-file", "rig", f"{CAL} --session {{text}}", 2, "--session"),
    C("calibrate-images-glob-matches-nothing", "rig",
      f"{CAL} --frame-images 'nomatch/*.png' --event-images 'nomatch/*.png'", 1, "nomatch"),
    C("calibrate-images-garbage", "rig", f"{CAL} --frame-images {{garbage}} --event-images {{garbage}}",
      1, "garbage.bin"),
    C("calibrate-events-glob-matches-nothing", "rig", f"{CAL} --events 'nomatch/*.raw'", 1,
      "nomatch"),
    C("calibrate-events-text", "rig", f"{CAL} --events {{text}}", 1, "text.txt"),
    C("calibrate-hardware-no-rig-yaml", "rig", f"{CAL} --hardware", 1, "rig.yaml"),
    C("calibrate-preview-port-huge", "rig", f"{CAL} --sim --preview --preview-port 70000", 2,
      "--preview-port"),
    C("calibrate-preview-port-without-preview", "rig", f"{CAL} --sim --preview-port 9000", 2,
      "--preview-port"),
    C("calibrate-preview-host-not-here", "rig",
      f"{CAL} --sim --preview --preview-port 0 --preview-host 192.0.2.1", 1, "--preview-host"),
    C("calibrate-preview-with-events", "rig", f"{CAL} --events {{text}} --preview", 2, "--preview"),
    C("calibrate-hardware-garbage-rig-yaml", "rig", f"{CAL} --hardware --rig-config {{garbage_yaml}}",
      1, "garbage.yaml"),
    C("calibrate-sim-ignores-rig-config", "rig", f"{CAL} --sim --rig-config {{garbage_yaml}}", 2,
      "--rig-config"),
    C("calibrate-export-garbage", "rig", "calibrate export --format kalibr {garbage_yaml} -o K/", 1,
      "garbage.yaml"),
    C("calibrate-export-empty", "rig", "calibrate export --format ros {empty_yaml} -o K/", 1,
      "empty.yaml"),
    C("calibrate-export-truncated", "rig", "calibrate export --format kalibr {calib_trunc} -o K/",
      1, "calib_trunc.yaml"),
    C("calibrate-export-binary", "rig", "calibrate export --format kalibr {garbage} -o K/", 1,
      "garbage.bin"),
    C("calibrate-export-folder-without-calib", "rig", "calibrate export --format ros {dir} -o K/",
      1, "calib.yaml"),
    C("calibrate-export-missing", "rig", "calibrate export --format ros {missing}", 2),
    # --- rig trigger, and the devices command (an unknown backend: refused before any discovery)
    C("trigger-ping-no-such-port", "rig", "trigger ping --port {missing} --timeout 0.2", 1,
      "missing"),
    C("trigger-status-port-is-a-text-file", "rig", "trigger status --port {text} --timeout 0.2",
      1),
    C("trigger-ping-count-zero", "rig", "trigger ping --port sim --count 0", 2, "--count"),
    C("trigger-test-rate-nan", "rig", "trigger test --port sim --rate nan", 2, "--rate"),
    C("trigger-test-seconds-negative", "rig", "trigger test --port sim --seconds -1", 2,
      "--seconds"),
    C("trigger-test-width-zero", "rig", "trigger test --port sim --width-us 0", 2, "--width-us"),
    C("trigger-timeout-huge-negative", "rig", "trigger status --port sim --timeout -1e300", 2,
      "--timeout"),
    C("devices-unknown-backend", "rig", "devices --backend nope", 2, "--backend"),
    # --- rpea events
    C("events-info-text", "rpea", "events info {text}", 1, "text.txt"),
    C("events-info-empty", "rpea", "events info {empty}", 1, "empty.bin"),
    C("events-info-garbage", "rpea", "events info {garbage}", 1, "garbage.bin"),
    C("events-info-hdf5-not-dsec", "rpea", "events info {h5}", 1, "other.h5"),
    C("events-info-truncated-raw", "rpea", "events info {raw_trunc}", 1, "trunc.raw"),
    C("events-info-folder", "rpea", "events info {dir}", 2),
    C("events-info-missing", "rpea", "events info {missing}", 2),
    C("events-info-width-negative", "rpea", "events info {raw} --width=-1", 2, "--width"),
    C("events-info-chunk-zero", "rpea", "events info {raw} --chunk-mb 0", 2, "--chunk-mb"),
    C("events-info-chunk-nan", "rpea", "events info {raw} --chunk-mb nan", 2, "--chunk-mb"),
    C("events-info-unreadable", "rpea", "events info {unreadable}", 1, "unreadable",
      unreadable=True),
    C("events-convert-text", "rpea", "events convert {text} out.h5", 1, "text.txt"),
    C("events-convert-empty", "rpea", "events convert {empty} out.h5", 1, "empty.bin"),
    C("events-convert-garbage", "rpea", "events convert {garbage} out.h5", 1, "garbage.bin"),
    C("events-convert-hdf5-not-dsec", "rpea", "events convert {h5} out.h5", 1, "other.h5"),
    C("events-convert-truncated-raw", "rpea", "events convert {raw_trunc} out.h5", 1, "trunc.raw"),
    C("events-convert-out-is-a-folder", "rpea", "events convert {raw} {dir}", 2, "OUT"),
    C("events-convert-out-exists", "rpea", "events convert {raw} {text}", 1, ("text.txt", "--force")),
    C("events-render-text", "rpea", "events render {text} out.mp4", 1, "text.txt"),
    C("events-render-garbage", "rpea", "events render {garbage} out.mp4", 1, "garbage.bin"),
    C("events-render-truncated-raw", "rpea", "events render {raw_trunc} out.mp4", 1, "trunc.raw"),
    C("events-render-fps-zero", "rpea", "events render {raw} out.mp4 --fps 0", 2, "--fps"),
    C("events-render-fps-negative", "rpea", "events render {raw} out.mp4 --fps=-1", 2, "--fps"),
    C("events-render-fps-nan", "rpea", "events render {raw} out.mp4 --fps nan", 2, "--fps"),
    C("events-render-accumulation-zero", "rpea", "events render {raw} out.mp4 --accumulation-ms 0",
      2, "--accumulation-ms"),
    C("events-render-start-after-the-end", "rpea", "events render {raw} out.mp4 --start-s 99", 1,
      ("events.raw", "no events")),
    C("events-render-out-is-a-folder", "rpea", "events render {raw} {dir}", 2, "OUT"),
    C("events-render-out-not-mp4", "rpea", "events render {raw} out.h5", 2, "OUT"),
    # --- rpea build
    C("build-calib-garbage", "rpea", "build --split all --sessions {session} --calib {garbage_yaml} "
      "--out D --quiet", 1, "garbage.yaml"),
    C("build-calib-empty", "rpea", "build --split all --sessions {session} --calib {empty_yaml} "
      "--out D --quiet", 1, "empty.yaml"),
    C("build-calib-truncated", "rpea", "build --split all --sessions {session} --calib "
      "{calib_trunc} --out D --quiet", 1, "calib_trunc.yaml"),
    C("build-calib-binary", "rpea", "build --split all --sessions {session} --calib {garbage} "
      "--out D --quiet", 1, "garbage.bin"),
    C("build-calib-text-yaml", "rpea", "build --split all --sessions {session} --calib {text} "
      "--out D --quiet", 1, "text.txt"),
    C("build-calib-folder", "rpea", "build --split all --sessions {session} --calib {dir} --out D",
      2, "--calib"),
    C("build-calib-unreadable", "rpea", "build --split all --sessions {session} --calib "
      "{unreadable} --out D --quiet", 1, "unreadable", unreadable=True),
    C("build-session-empty-folder", "rpea", "build --split all --sessions {dir} --calib {calib} "
      "--out D --quiet", 1, "dir"),
    C("build-session-events-are-text", "rpea", "build --split all --sessions {session_text_events} "
      "--calib {calib} --out D --quiet", 1, "events.raw"),
    C("build-session-manifest-garbage", "rpea", "build --split all --sessions {session_bad_manifest} "
      "--calib {calib} --out D --quiet", 1, "session.json"),
    C("build-session-is-a-file", "rpea", "build --split all --sessions {text} --calib {calib} "
      "--out D", 2, "--sessions"),
    C("build-session-glob-matches-nothing", "rpea", "build --split all --sessions 'rec/*' "
      "--calib {calib} --out D", 2, "rec/*"),
    C("build-label-mapping-garbage", "rpea", "build --split all --sessions {session} --calib "
      "{calib} --label-mapping {garbage} --out D", 1, "garbage.bin"),
    C("build-window-negative", "rpea", "build --split all --sessions {session} --calib {calib} "
      "--window-ms -5 --out D", 2, "--window-ms"),
    C("build-window-nan", "rpea", "build --split all --sessions {session} --calib {calib} "
      "--window-ms nan --out D", 2, "--window-ms"),
    C("build-workers-zero", "rpea", "build --split all --sessions {session} --calib {calib} "
      "--workers 0 --out D", 2, "--workers"),
    C("build-alpha-above-beta", "rpea", "build --split all --sessions {session} --calib "
      "{calib} --alpha 0.95 --out D", 2, "--alpha"),
    # --- rpea check / stats / show / export-annotation / import-labels / export
    C("check-empty-folder", "rpea", "check {dir}", 1, "index.json"),
    C("check-text-file", "rpea", "check {text}", 2),
    C("stats-empty-folder", "rpea", "stats {dir} --out ST", 1, "dir"),
    C("stats-dataset-of-text-files", "rpea", "stats {bad_data} --out ST", 1),
    C("stats-out-is-a-file", "rpea", "stats {data} --out {text}", 2, "--out"),
    C("show-empty-folder", "rpea", "show {dir} --index 0 --out p.png", 1, "dir"),
    C("show-text-file", "rpea", "show {text} --index 0 --out p.png", 2),
    C("show-index-negative", "rpea", "show {data} --index=-1 --out p.png", 2, "--index"),
    C("show-index-huge", "rpea", "show {data} --index 99999999999 --out p.png", 1, "--index"),
    C("show-truncated-sequence", "rpea", "show {trunc_data} --index 0 --out p.png", 1),
    C("show-dataset-of-text-files", "rpea", "show {bad_data} --index 0 --out p.png", 1),
    C("show-video-no-sequence", "rpea", "show {data} --video v.mp4", 2, "--sequence"),
    C("show-video-unknown-sequence", "rpea", "show {data} --video v.mp4 --sequence nope", 1,
      ("nope", "val/day_0000")),
    C("show-video-is-a-folder", "rpea", "show {data} --split val --sequence day_0000 --video {dir}",
      2, "--video"),
    C("show-video-not-mp4", "rpea", "show {data} --split val --sequence day_0000 --video v.h5", 2,
      "--video"),
    C("show-video-truncated-sequence", "rpea", "show {trunc_data} --split val --sequence day_0000 "
      "--video v.mp4", 1),
    C("show-video-with-index", "rpea", "show {data} --split val --sequence day_0000 --video v.mp4 "
      "--index 0", 2, "--index"),
    C("export-annotation-empty-folder", "rpea", "export-annotation {dir} --out A", 1, "dir"),
    C("export-annotation-every-zero", "rpea", "export-annotation {data} --out A --every 0", 2,
      "--every"),
    C("import-labels-empty-folders", "rpea", "import-labels {dir} --labels {dir}", 1),
    C("import-labels-mapping-garbage", "rpea", "import-labels {data} --labels {dir} --mapping "
      "{garbage}", 1, "garbage.bin"),
    C("export-empty-folder", "rpea", "export --format cityscapes {dir} -o X", 1),
    C("export-dataset-of-text-files", "rpea", "export --format cityscapes {bad_data} -o X", 1),
    # --- cacd train
    C("train-data-empty-folder", "cacd", "train --data {dir} --out R", 1, "dir"),
    C("train-data-text-file", "cacd", "train --data {text} --out R", 2, "--data"),
    C("train-data-missing", "cacd", "train --data {missing} --out R", 2, "--data"),
    C("train-data-of-text-files", "cacd", "train --data {bad_data} --out R --quiet", 1),
    C("train-data-truncated", "cacd", "train --data {trunc_data} --out R --quiet", 1),
    C("train-set-epochs-text", "cacd", "train --data {data} --out R --set train.epochs=abc", 2,
      "train.epochs"),
    C("train-set-unknown-key", "cacd", "train --data {data} --out R --set train.epoch=3", 2,
      "did you mean 'train.epochs'"),
    C("train-set-lr-negative", "cacd", "train --data {data} --out R --set train.lr=-1", 2,
      "train.lr"),
    C("train-set-tau-nan", "cacd", "train --data {data} --out R --set loss.tau=.nan", 2, "loss.tau"),
    C("train-set-no-equals", "cacd", "train --data {data} --out R --set train.epochs", 2, "--set"),
    C("train-set-backbone-unknown", "cacd", "train --data {data} --out R --set model.backbone=mit_b9",
      2, "mit_b9"),
    C("train-set-masks-typo", "cacd", "train --data {data} --out R --set data.masks=orcale", 2,
      "did you mean 'oracle'"),
    C("train-set-distill-typo", "cacd", "train --data {data} --out R --set "
      "loss.distill_direction=mutal", 2, "did you mean 'mutual'"),
    # the synthetic dataset's masks are ground truth: they never pass for computed ones
    C("train-precomputed-masks-are-oracle", "cacd", "train --data {data} --out R --quiet --set "
      "data.masks=precomputed", 1, ("ground truth (oracle)", "cacd masks DIR")),
    C("train-config-garbage", "cacd", "train --data {data} --out R --config {garbage_yaml}", 2,
      "garbage.yaml"),
    C("train-config-binary", "cacd", "train --data {data} --out R --config {garbage}", 2,
      "garbage.bin"),
    C("train-config-text", "cacd", "train --data {data} --out R --config {text}", 2, "text.txt"),
    C("train-config-folder", "cacd", "train --data {data} --out R --config {dir}", 2, "dir"),
    C("train-config-missing", "cacd", "train --data {data} --out R --config {missing}", 2,
      "missing"),
    C("train-config-wrong-type", "cacd", "train --data {data} --out R --config {config_bad}", 2,
      ("config_bad.yaml", "train.batch_size")),
    C("train-config-unknown-key", "cacd", "train --data {data} --out R --config {config_typo}", 2,
      ("config_typo.yaml", "did you mean 'data.crop'")),
    C("train-config-unreadable", "cacd", "train --data {data} --out R --config {unreadable}", 2,
      "unreadable", unreadable=True),
    # --- cacd eval / predict
    C("eval-checkpoint-garbage", "cacd", "eval --checkpoint {st_garbage} --data {data} --out E.json",
      1, "garbage.safetensors"),
    C("eval-checkpoint-truncated", "cacd", "eval --checkpoint {st_trunc} --data {data} --out E.json",
      1, "trunc.safetensors"),
    C("eval-checkpoint-empty", "cacd", "eval --checkpoint {empty} --data {data} --out E.json", 1,
      "empty.bin"),
    C("eval-checkpoint-text", "cacd", "eval --checkpoint {text} --data {data} --out E.json", 1,
      "text.txt"),
    C("eval-checkpoint-empty-folder", "cacd", "eval --checkpoint {dir} --data {data} --out E.json",
      1, "dir"),
    C("eval-checkpoint-unreadable", "cacd", "eval --checkpoint {unreadable} --data {data} "
      "--out E.json", 1, "unreadable", unreadable=True),
    C("eval-data-empty-folder", "cacd", "eval --checkpoint {run} --data {dir} --out E.json", 1),
    C("eval-data-of-text-files", "cacd", "eval --checkpoint {run} --data {bad_data} --out E.json",
      1),
    C("eval-split-missing", "cacd", "eval --checkpoint {run} --data {data} --split test "
      "--out E.json", 1, "test"),
    C("eval-misalign-text", "cacd", "eval --checkpoint {run} --data {data} --misalign a,b", 2,
      "--misalign"),
    C("eval-misalign-nan", "cacd", "eval --checkpoint {run} --data {data} --misalign 0,nan", 2,
      "--misalign"),
    C("eval-limit-zero", "cacd", "eval --checkpoint {run} --data {data} --limit 0", 2, "--limit"),
    C("eval-out-is-a-folder", "cacd", "eval --checkpoint {run} --data {data} --out {dir}", 2,
      "--out"),
    C("eval-out-below-a-file", "cacd", "eval --checkpoint {run} --data {data} --out {text}/E.json",
      2, ("text.txt", "--out")),
    C("predict-checkpoint-garbage", "cacd", "predict --checkpoint {st_garbage} --data {data} "
      "--out P", 1, "garbage.safetensors"),
    C("predict-data-empty-folder", "cacd", "predict --checkpoint {run} --data {dir} --out P", 1),
    C("predict-limit-negative", "cacd", "predict --checkpoint {run} --data {data} --out P "
      "--limit=-2", 2, "--limit"),
    C("predict-session-missing", "cacd", "predict --checkpoint {run} --session {missing} --out P",
      2, ("--session", "missing")),
    C("predict-session-no-calibration", "cacd", "predict --checkpoint {run} --session {session} "
      "--out P --video P.mp4", 1, ("calib/calib.yaml", "rig calibrate --checkerboard")),
    C("predict-session-and-data", "cacd", "predict --checkpoint {run} --session {session} "
      "--data {data} --out P", 2, ("--session", "--data")),
    C("predict-session-calib-text", "cacd", "predict --checkpoint {run} --session {session} "
      "--calib {text} --out P", 1, "text.txt"),
    C("predict-session-calib-other-rig", "cacd", "predict --checkpoint {run} --session {session} "
      "--calib {calib} --out P", 1, ("calib.yaml", "rig calibrate --checkerboard")),
    C("predict-session-bad-manifest", "cacd", "predict --checkpoint {run} --session "
      "{session_bad_manifest} --calib {calib} --out P", 1, "session_bad_manifest"),
    C("predict-video-not-mp4", "cacd", "predict --checkpoint {run} --data {data} --out P "
      "--video {text}", 2, "--video"),
    C("predict-video-below-a-file", "cacd", "predict --checkpoint {run} --data {data} --out P "
      "--video {text}/v.mp4", 2, ("--video", "text.txt")),
    C("predict-out-below-a-file", "cacd", "predict --checkpoint {run} --data {data} "
      "--out {text}/P", 2, ("--out", "text.txt")),
    C("predict-pre-annotations-is-a-file", "cacd", "predict --checkpoint {run} --data {data} "
      "--pre-annotations {text}", 2, ("--pre-annotations", "text.txt")),
    C("predict-pre-annotations-below-a-file", "cacd", "predict --checkpoint {run} --data {data} "
      "--pre-annotations {text}/pre", 2, ("--pre-annotations", "text.txt")),
    C("predict-pre-annotations-not-empty", "cacd", "predict --checkpoint {run} --data {data} "
      "--pre-annotations {session}", 2, ("--pre-annotations", "not empty")),
    C("predict-pre-annotations-all-labelled", "cacd", "predict --checkpoint {run} --data {data} "
      "--pre-annotations P", 1, ("every pair has labels", "nothing to pre-annotate")),
    C("predict-out-inside-pre-annotations", "cacd", "predict --checkpoint {run} --data {data} "
      "--pre-annotations P --out P/figs", 2, ("--pre-annotations", "--out")),
    C("predict-min-confidence-above-one", "cacd", "predict --checkpoint {run} --data {data} "
      "--pre-annotations P --min-confidence 1.5", 2, "--min-confidence"),
    C("predict-min-confidence-nan", "cacd", "predict --checkpoint {run} --data {data} "
      "--pre-annotations P --min-confidence nan", 2, "--min-confidence"),
    C("predict-min-confidence-without-pre-annotations", "cacd", "predict --checkpoint {run} "
      "--data {data} --out P --min-confidence 0.5", 2, ("--min-confidence", "--pre-annotations")),
    C("predict-label-ids-unknown", "cacd", "predict --checkpoint {run} --data {data} "
      "--pre-annotations P --label-ids colour", 2, "--label-ids"),
    # --- cacd bench / masks / synth
    C("bench-backbone-unknown", "cacd", "bench --backbone mit_b9", 2, "mit_b9"),
    C("bench-size-zero", "cacd", "bench --size 0", 2, "--size"),
    C("bench-runs-negative", "cacd", "bench --runs -1", 2, "--runs"),
    C("bench-size-huge", "cacd", "bench --size 10000000000", 2, "--size"),
    C("masks-empty-folder", "cacd", "masks {dir}", 1, "dir"),
    C("masks-text-file", "cacd", "masks {text}", 2),
    C("masks-dataset-of-text-files", "cacd", "masks {bad_data}", 1),
    C("masks-sam-without-checkpoint", "cacd", "masks {data} --provider sam", 2, "--sam-checkpoint"),
    C("synth-pairs-zero", "cacd", "synth --out Y --pairs 0", 2, "--pairs"),
    C("synth-train-zero", "cacd", "synth --out Y --train 0", 2, "--train"),
    C("synth-height-negative", "cacd", "synth --out Y --height -5", 2, "--height"),
    C("synth-width-text", "cacd", "synth --out Y --width abc", 2, "--width"),
    C("synth-out-is-a-file", "cacd", "synth --out {text}", 2, "--out"),
]


# --- the inputs ------------------------------------------------------------------------------------

def _mains() -> dict[str, click.Command]:
    from dataset.cli import main as rpea
    from model.cli import main as cacd
    from rig.cli import main as rig

    return {"rig": rig, "rpea": rpea, "cacd": cacd}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """The bad (and the few good) inputs, made once; the matrix only reads them."""
    import h5py
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from calibration.io import Calibration, save_calibration
    from dataset.synthetic import SynthConfig, write_dataset
    from model.cacd import CACDNet, NetConfig
    from model.checkpoint import save_model

    root = tmp_path_factory.mktemp("inputs")
    p: dict[str, Path] = {}

    def file(name: str, data: bytes) -> Path:
        (root / name).write_bytes(data)
        return root / name

    p["text"] = file("text.txt", b"hello world\nthis is text, not data\n")
    p["empty"] = file("empty.bin", b"")
    p["garbage"] = file("garbage.bin", np.random.default_rng(16).bytes(4096))
    p["garbage_yaml"] = file("garbage.yaml", b"foo: [1, 2\n::: garbage\x00\x01")
    p["empty_yaml"] = file("empty.yaml", b"")
    p["calib_trunc"] = file("calib_trunc.yaml", b"%YAML:1.0\n---\nK_frame: !!opencv-matrix\n"
                                                b"   rows: 3\n   cols: 3\n   dt: d\n   data: [ 1., 0.,")
    p["st_garbage"] = file("garbage.safetensors", np.random.default_rng(1).bytes(4096))
    p["config_bad"] = file("config_bad.yaml", b"train:\n  batch_size: many\n")
    p["config_typo"] = file("config_typo.yaml", b"model:\n  crop: [64, 64]\n")
    p["unreadable"] = file("unreadable", b"secret: 1\n")
    p["unreadable"].chmod(0)
    p["dir"] = root / "dir"
    p["dir"].mkdir()
    p["missing"] = root / "missing"
    with h5py.File(root / "other.h5", "w") as f:
        f["a"] = np.arange(3)
    p["h5"] = root / "other.h5"
    save_file({"w": torch.zeros(1000)}, str(root / "whole.safetensors"), metadata={"x": "y"})
    p["st_trunc"] = file("trunc.safetensors", (root / "whole.safetensors").read_bytes()[:1500])

    # a short simulated session (and its event recording, truncated in its header)
    res = CliRunner().invoke(_mains()["rig"], ["record", "--sim", "--duration", "0.1", "--out",
                                               str(root / "session"), "--quiet"])
    assert res.exit_code == 0, res.output
    p["session"] = root / "session"
    p["raw"] = root / "session" / "events.raw"
    for name, entry, data in (("session_text_events", "events.raw", b"hello world\n"),
                              ("session_bad_manifest", "session.json", b"{\n")):
        p[name] = root / name
        shutil.copytree(p["session"], p[name])
        (p[name] / entry).write_bytes(data)
    head = p["raw"].read_bytes()[:4096]
    p["raw_trunc"] = file("trunc.raw", head[:head.index(b"\n", 20) - 3])

    # a tiny dataset, one truncated copy of it, one of text files; an untrained checkpoint
    p["data"] = write_dataset(root / "data", {"train": 1, "val": 1},
                              SynthConfig(height=32, width=48, pairs_per_sequence=2, substeps=2))
    p["trunc_data"] = root / "trunc_data"
    shutil.copytree(p["data"], p["trunc_data"])
    for h5 in p["trunc_data"].rglob("*.h5"):
        h5.write_bytes(h5.read_bytes()[:h5.stat().st_size // 2])
    p["bad_data"] = root / "bad_data"
    shutil.copytree(p["data"], p["bad_data"])
    for h5 in p["bad_data"].rglob("*.h5"):
        h5.write_text("not hdf5\n")
    p["calib"] = root / "calib.yaml"  # valid (an identity alignment), beside the bad inputs
    eye, k = np.eye(3), np.array([[100.0, 0, 32], [0, 100, 24], [0, 0, 1]])
    save_calibration(Calibration(
        K_frame=k, dist_frame=np.zeros(5), size_frame=(64, 48), K_event=k, dist_event=np.zeros(5),
        size_event=(64, 48), R=eye, T=np.zeros(3), model="homography", H=eye, output_size=(64, 48),
        valid_roi=(0, 0, 64, 48), rms_frame=0.1, rms_event=0.1, rms_stereo=0.1, K_aligned=k.copy(),
        R_rect_frame=eye), p["calib"])
    p["run"] = root / "run"
    p["run"].mkdir()
    save_model(CACDNet(NetConfig(proj_dim=16)), p["run"] / "best.safetensors")
    return p


def _listing(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(f.relative_to(folder)), f.stat().st_size if f.is_file() else -1)
                  for f in folder.rglob("*"))


def _root_reads_anyway() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_error_line_and_leaves_nothing(case: Case, inputs: dict[str, Path],
                                                        tmp_path: Path, monkeypatch) -> None:
    if case.unreadable and _root_reads_anyway():
        pytest.skip("running as root: an unreadable file is readable anyway")
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    args = shlex.split(case.args.format(**{k: str(v) for k, v in inputs.items()}))
    input_root = inputs["text"].parent
    before = _listing(input_root)

    res = CliRunner().invoke(_mains()[case.prog], args)

    out = res.output
    shown = f"{case.prog} {shlex.join(args)}\n--- exit {res.exit_code}\n{out}"
    assert isinstance(res.exception, SystemExit), shown + f"\n{res.exception!r}"  # never escapes
    assert res.exit_code in (1, 2), shown
    if case.code is not None:
        assert res.exit_code == case.code, shown
    assert "Traceback" not in out, shown
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, shown
    assert len(errors[0]) > len("Error: ") + 10, shown
    for text in case.says:
        assert text in errors[0], f"{text!r} not in the error line\n{shown}"
    for text in case.never:
        assert text not in out, f"{text!r} in the output\n{shown}"
    assert "unexpected" not in errors[0], f"an unforeseen exception (a bug?)\n{shown}"
    assert _listing(work) == [], f"left behind: {_listing(work)}\n{shown}"
    assert _listing(input_root) == before, shown


# --- the rule's own mechanics ---------------------------------------------------------------------

def test_debug_flag_and_environment_show_the_traceback(inputs: dict[str, Path], tmp_path: Path,
                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    cacd = _mains()["cacd"]
    args = ["eval", "--checkpoint", str(inputs["st_garbage"]), "--data", str(inputs["data"])]
    res = CliRunner().invoke(cacd, args)
    assert res.exit_code == 1 and "Error: " in res.output
    res = CliRunner().invoke(cacd, ["--debug", *args])
    assert res.exit_code == 1 and isinstance(res.exception, ValueError), res.output
    monkeypatch.setenv(DEBUG_ENV, "1")
    res = CliRunner().invoke(cacd, args)
    assert res.exit_code == 1 and isinstance(res.exception, ValueError), res.output
    for prog, main in _mains().items():
        assert "--debug" in CliRunner().invoke(main, ["--help"]).output, prog


def _group_raising(exc: BaseException) -> click.Group:
    @click.group(cls=CommandGroup)
    def main() -> None:
        pass

    @main.command()
    def boom() -> None:
        raise exc

    return main


@pytest.mark.parametrize(("exc", "says", "bug"), [
    (ValueError("data/x.h5: not an RPEA file; run rpea build"), "data/x.h5: not an RPEA file", False),
    (FileNotFoundError(2, "No such file or directory", "in.yaml"), "in.yaml: No such file", False),
    (PermissionError(13, "Permission denied", "secret.yaml"), "check its permissions", False),
    (TypeError("unsupported operand"), "unexpected TypeError: unsupported operand", True),
    (KeyError("k"), "unexpected KeyError", True),
])
def test_errors_become_one_line(exc: BaseException, says: str, bug: bool, monkeypatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    res = CliRunner().invoke(_group_raising(exc), ["boom"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], res.output
    assert ("--debug" in lines[0]) is bug
    res = CliRunner().invoke(_group_raising(exc), ["--debug", "boom"])
    assert res.exception is exc


def test_multi_line_messages_are_joined() -> None:
    assert describe(ValueError("a.yaml: bad\n  in line 3\n"))[0] == "a.yaml: bad in line 3"
    res = CliRunner().invoke(_group_raising(click.ClickException("one\ntwo")), ["boom"])
    assert res.output.strip() == "Error: one two"


def test_interrupt_and_exit_pass_through(monkeypatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert CliRunner().invoke(_group_raising(SystemExit(3)), ["boom"]).exit_code == 3
    res = CliRunner().invoke(_group_raising(KeyboardInterrupt()), ["boom"])
    assert res.exit_code == 1 and "Aborted" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(("value", "ok"), [("1", True), ("0", False), ("-2", False), ("nan", False),
                                           ("inf", False), ("1e3", True), ("x", False)])
def test_number_option(value: str, ok: bool) -> None:
    @click.command()
    @click.option("--n", type=Number(float, min=0, min_open=True, unit="s"))
    def cmd(n: float) -> None:
        click.echo(f"n={n}")

    res = CliRunner().invoke(cmd, ["--n", value])
    assert (res.exit_code == 0) is ok, res.output
    if not ok:
        assert res.exit_code == 2 and "--n" in res.output and "Traceback" not in res.output


def test_removed_on_failure_keeps_what_existed_and_what_is_worth_keeping(tmp_path: Path) -> None:
    from common.atomic import removed_on_failure

    (tmp_path / "old").mkdir()
    with pytest.raises(RuntimeError), removed_on_failure(tmp_path / "old", tmp_path / "a" / "b"):
        (tmp_path / "a" / "b").mkdir(parents=True)
        (tmp_path / "old" / "x").write_text("x")
        raise RuntimeError
    assert (tmp_path / "old" / "x").is_file() and not (tmp_path / "a").exists()
    with pytest.raises(RuntimeError), removed_on_failure(tmp_path / "k",
                                                         keep=lambda p: (p / "ckpt").exists()):
        (tmp_path / "k").mkdir()
        (tmp_path / "k" / "ckpt").write_text("x")
        raise RuntimeError
    assert (tmp_path / "k" / "ckpt").is_file()
    with removed_on_failure(tmp_path / "ok"):
        (tmp_path / "ok").mkdir()
    assert (tmp_path / "ok").is_dir()
