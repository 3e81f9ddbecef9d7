"""`cacd train`, `cacd eval`, `cacd predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
import torch
import yaml

from common.clierrors import Number, positive
from common.workspace import WorkspaceError, new_folder_name
from model import config as config_mod

if TYPE_CHECKING:
    from common.workspace import Workspace


def _run_config(checkpoint: Path) -> dict:
    """The resolved config of a run folder (or the defaults for a bare weights file)."""
    run = checkpoint if checkpoint.is_dir() else checkpoint.parent
    path = run / "config.yaml"
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise click.ClickException(f"{path}: cannot read the run's config "
                                       f"({' '.join(str(err).split())})") from None
        try:
            return config_mod.check_config(data if data is not None else {}, str(path))
        except config_mod.ConfigError as err:
            raise click.ClickException(str(err)) from None
    return config_mod.resolve()


def _workspace() -> Workspace:
    from common.workspace import load_workspace

    try:
        return load_workspace()
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None


def _default_data(data_dir: str | None, ws: Workspace) -> str:
    """--data, else the workspace's data/ (said on stderr; an error when it holds no dataset)."""
    if data_dir is not None:
        return data_dir
    if not ws.data.is_dir():
        raise click.ClickException(f"no dataset at {ws.show(ws.data)} ({ws.origin('data')}): build "
                                   "one with rpea build --split train, or give --data DIR")
    click.echo(f"dataset: {ws.show(ws.data)} ({ws.origin('data')})", err=True)
    return str(ws.data)


def _default_checkpoint(checkpoint: str | None, ws: Workspace) -> str:
    """--checkpoint, else the newest run under the workspace's runs/."""
    from model.checkpoint import find_runs

    if checkpoint is not None:
        return checkpoint
    runs = find_runs(ws.runs)
    if not runs:
        raise click.ClickException(f"no trained run under {ws.show(ws.runs)} "
                                   f"({ws.origin('runs')}): train one with cacd train, or give "
                                   "--checkpoint RUN_OR_FILE")
    click.echo(f"checkpoint: the newest run, {ws.show(runs[-1])}", err=True)
    return str(runs[-1])


def _sync_data_cfg(cfg: dict, net) -> dict:
    """Make the data side agree with the network (event channels, modalities)."""
    cfg["model"]["modalities"] = net.cfg.modalities
    if net.cfg.event_channels != 3:
        cfg["data"]["representation"] = "voxel"
        cfg["data"]["bins"] = net.cfg.event_channels
    return cfg


@click.command("train")
@click.option("--data", "data_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="RPEA dataset root (with train/ and optionally val/) [default: the "
                   "workspace's data/].")
@click.option("--out", "run_dir", default=None, type=click.Path(file_okay=False),
              help="Run folder: checkpoints, TensorBoard logs, metrics [default: a new "
                   "runs/run_<time>; with --resume the newest run].")
@click.option("--config", "config_file", default=None,
              help="YAML config (path or a name in configs/, e.g. paper.yaml). "
                   "Default: the compact CPU preset.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set train.max_minutes=3 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue the run in --out exactly where it stopped.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train_cmd(data_dir, run_dir, config_file, sets, resume, quiet):
    """Train CACD on the `train` split, validating on `val` when present.

    Typed bare, it trains on the workspace's data/ into a new folder under its runs/
    (docs/workspace.md).

    \b
    Examples:
      cacd train                                    # the workspace's dataset, a new run
      cacd train --data data/ --out runs/compact
      cacd train --data data/ --out runs/b5 --config paper.yaml --set train.batch_size=8
      cacd train --data data/ --out runs/ablate_img --config ablation/image_only.yaml
      cacd train --data data/ --out runs/compact --resume
      torchrun --nproc_per_node 2 -m model.cli train --data data/ --out runs/ddp

    Ctrl-C stops after the current step with a checkpoint (exit 130); --resume then
    continues exactly as if never stopped (also after a kill, from the last checkpoint).
    """
    from common.atomic import removed_on_failure
    from dataset.reader import has_split
    from model.checkpoint import RUN_WEIGHTS, find_runs
    from model.train import train

    try:  # the config first: a typo fails before anything is read or created
        cfg = config_mod.resolve(config_file, sets)
    except config_mod.ConfigError as err:
        raise click.UsageError(str(err)) from None
    ws = _workspace()
    data_dir = _default_data(data_dir, ws)
    if run_dir is None:
        runs = find_runs(ws.runs)
        if resume and not runs:
            raise click.ClickException(f"--resume: no run under {ws.show(ws.runs)} to resume; "
                                       "give --out RUN")
        run_dir = str(runs[-1] if resume else new_folder_name(ws.runs, "run"))
        click.echo(f"run: {ws.show(Path(run_dir))} ({'the newest run' if resume else 'new'}, "
                   f"runs: {ws.origin('runs')})", err=True)
    if not has_split(data_dir, "train"):
        raise click.ClickException(f"{data_dir}: no train split (train/*.h5); build it with "
                                   "rpea build --split train")
    if not has_split(data_dir, "val"):
        click.echo(f"warning: {data_dir} has no val split: training without validation (the "
                   "last weights are kept, no best-on-val). Build one with: rpea build --split val "
                   "(it needs a second recorded session)", err=True)
    if resume and (Path(run_dir) / "config.yaml").is_file() and not config_file and not sets:
        cfg = _run_config(Path(run_dir))
    # a run that fails before its first checkpoint leaves no folder behind
    with removed_on_failure(run_dir, keep=lambda folder: any(
            f.name in RUN_WEIGHTS for f in folder.rglob("*.safetensors"))):
        summary = train(cfg, data_dir, run_dir, resume=resume, progress=not quiet)
    if summary.get("interrupted"):  # Ctrl-C: the step's checkpoint is saved, resume continues it
        click.echo(f"interrupted at step {summary['global_step']} (checkpoint saved in {run_dir}); "
                   f"continue exactly with: cacd train --data {data_dir} --out {run_dir} --resume"
                   + (" (and the same --config/--set)" if config_file or sets else ""), err=True)
        raise SystemExit(130)
    best = summary["best_val_mIoU"]
    click.echo(f"trained {summary['global_step']} steps in {summary['elapsed_s']} s; "
               + (f"best val mIoU {best}" if best is not None else "not validated (no val split)")
               + f"; run: {run_dir}")


def _misalign_list(text: str) -> list[float]:
    """--misalign: a comma list of finite shifts in pixels (>= 0)."""
    import math

    try:
        shifts = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        shifts = []
    if not shifts or not all(math.isfinite(v) and v >= 0 for v in shifts):
        raise click.BadParameter(f"{text!r}: expected shifts in pixels (numbers >= 0), comma-"
                                 "separated, e.g. 0,1,2,4,8", param_hint="--misalign")
    return shifts


def _check_out_folder(out: Path) -> None:
    """--out must lie in a folder (or where one can be made): not below a file."""
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise click.UsageError(f"{out}: {folder} is a file, not a folder; give --out a path in "
                               "a folder")


@click.command("eval")
@click.option("--checkpoint", default=None, type=click.Path(exists=True),
              help="Run folder (uses best, else last) or a .safetensors file [default: the "
                   "newest run under the workspace's runs/].")
@click.option("--data", "data_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="RPEA dataset root [default: the workspace's data/].")
@click.option("--split", default="val", show_default=True)
@click.option("--misalign", default="0", show_default=True,
              help="Comma list of event shifts in pixels (random directions), e.g. 0,1,2,4,8.")
@click.option("--out", "out_json", default=None, type=click.Path(dir_okay=False),
              help="Metrics JSON (default: <run>/eval_<split>.json); the confusion matrix PNG "
                   "goes beside it as <name>_confusion.png.")
@click.option("--limit", type=positive(int), default=None, help="Evaluate only the first N pairs.")
@click.option("--device", default=None, help="cpu | cuda (default: cuda if available).")
def eval_cmd(checkpoint, data_dir, split, misalign, out_json, limit, device):
    """Evaluate a checkpoint: mIoU overall, per class, day/night, over/under-exposed regions.

    Prints the per-class IoU table (overall / day / night / under / over), writes the metrics
    JSON and, beside it, <name>_confusion.png: the row-normalised confusion matrix (table and
    matrix of the first --misalign shift when it lists several).

    \b
    Examples:
      cacd eval                                     # the newest run on the workspace's data/
      cacd eval --checkpoint runs/compact --data data/
      cacd eval --checkpoint runs/compact/best.safetensors --data data/ --misalign 0,1,2,4,8
      cacd eval --out results/eval.json             # + results/eval_confusion.png
    """
    import numpy as np

    from common.atomic import PendingFile, removed_on_failure
    from model.checkpoint import load_model, resolve_checkpoint
    from model.evaluate import evaluate, per_class_table, write_json
    from model.figures import draw_confusion_png

    shifts = _misalign_list(misalign)
    ws = _workspace()
    checkpoint = _default_checkpoint(checkpoint, ws)
    data_dir = _default_data(data_dir, ws)
    run = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    out = Path(out_json) if out_json else run / f"eval_{split}.json"
    png = out.with_name(f"{out.stem}_confusion.png")
    _check_out_folder(out)  # before the evaluation, which takes a while
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = resolve_checkpoint(checkpoint)
    net = load_model(ckpt, device)
    cfg = _sync_data_cfg(_run_config(Path(checkpoint)), net)
    docs = []
    for px in shifts:
        doc = evaluate(net, cfg, data_dir, split, misalign_px=px, device=device,
                       max_samples=limit)
        doc["checkpoint"] = str(ckpt)
        docs.append(doc)
    click.echo(per_class_table(docs[0]))
    if len(docs) == 1:
        d = docs[0]
        click.echo(f"mIoU {d['mIoU']}")
        click.echo("  " + "  ".join(f"{c} {d[c]['mIoU']}" for c in
                                    ("day", "night", "under", "over", "normal")))
        result = d
    else:
        click.echo("misalign_px  mIoU  day  night  under  over")
        for d in docs:
            click.echo(f"{d['misalign_px']:>11g}  {d['mIoU']}  {d['day']['mIoU']}  "
                       f"{d['night']['mIoU']}  {d['under']['mIoU']}  {d['over']['mIoU']}")
        click.echo(f"mIoU {docs[0]['mIoU']}")
        result = {"mIoU": docs[0]["mIoU"], "misalignment": docs}
    first = docs[0]
    with removed_on_failure(out, png):  # the PNG is published only once the JSON is written
        pending = PendingFile(png, suffix=".png")
        try:
            shift = f", events shifted {first['misalign_px']:g} px" if first["misalign_px"] else ""
            draw_confusion_png(np.asarray(first["confusion"]["pixels"]),
                               first["confusion"]["classes"], pending.tmp_path,
                               f"{split} split, {first['num_samples']} pairs{shift}")
            write_json(result, out)
            pending.publish()
        finally:
            pending.discard()
    click.echo(f"wrote {out}, {png}")


def _session_calibration(calib: str | None, ws: Workspace) -> Path:
    """--calib, else the workspace's calib/calib.yaml (said on stderr); an error naming calib/
    and the command that makes one when there is none."""
    if calib is not None:
        return Path(calib)
    try:
        return ws.default_calibration("align the session")
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("predict")
@click.option("--checkpoint", default=None, type=click.Path(exists=True),
              help="Run folder or .safetensors file [default: the newest run under runs/].")
@click.option("--data", "data_dir", default=None, type=click.Path(exists=True, file_okay=False),
              help="RPEA dataset root [default: the workspace's data/, unless --session].")
@click.option("--split", default="val", show_default=True, help="The split of --data to draw.")
@click.option("--session", "session_dir", default=None,
              type=click.Path(exists=True, file_okay=False),
              help="A recorded session (rig record) instead of --data: its pairs are made on the "
                   "fly with the calibration; nothing is written to data/.")
@click.option("--calib", "calib_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Calibration that aligns --session [default: the workspace's calib/calib.yaml].")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Folder for the PNGs [default: <run>/predictions, with --session "
                   "<run>/predictions/<session>; none with --pre-annotations].")
@click.option("--video", default=None, type=click.Path(dir_okay=False),
              help="Also write the panels, in order, as one MP4 at the recording rate (divided "
                   "by --every).")
@click.option("--limit", type=positive(int), default=None,
              help="Pairs to draw [default: 20 with --data, every pair with --session or "
                   "--pre-annotations].")
@click.option("--every", type=positive(int), default=1, show_default=True,
              help="Draw every Nth pair only.")
@click.option("--pre-annotations", "pre_dir", default=None,
              type=click.Path(file_okay=False, path_type=Path),
              help="Write the predictions of the pairs without labels as label PNGs that rpea "
                   "import-labels takes back: <DIR>/<sequence>/frame_<id>_labelIds.png and "
                   "pre_annotations.json (a new or empty folder; panels then only with --out "
                   "or --video).")
@click.option("--label-ids", type=click.Choice(["label", "train"]), default="label",
              show_default=True,
              help="Ids of the --pre-annotations PNGs, as rpea import-labels --ids reads them: "
                   "Cityscapes label ids (not annotated: 0) or train ids (not annotated: 255).")
@click.option("--min-confidence", type=Number(float, min=0, max=1), default=0.0,
              show_default=True,
              help="--pre-annotations leave a pixel unannotated (ignore) where the predicted "
                   "class's probability is below this, to show annotators where the model is "
                   "unsure; 0 keeps every prediction.")
@click.option("--device", default=None, help="cpu | cuda (default: cuda if available).")
def predict_cmd(checkpoint, data_dir, split, session_dir, calib_file, out_dir, video, limit, every,
                pre_dir, label_ids, min_confidence, device):
    """Draw prediction overlays: RGB | events | prediction over RGB | ground truth.

    One PNG per pair (ground truth where the pair has labels: a built split, a simulated
    session); --video adds one MP4 of the same panels. --session predicts on a recording
    directly: the session is paired, aligned and windowed exactly as rpea build does it, in a
    temporary folder removed afterwards. --pre-annotations writes the predictions of the pairs
    without labels for annotators to correct (rpea export-annotation's folders and frame names;
    back in with rpea import-labels).

    \b
    Examples:
      cacd predict                                  # the newest run, the workspace's data/
      cacd predict --checkpoint runs/compact --data data/ --out figs/ --limit 8
      cacd predict --session recordings/session_20260101_120000 --video drive.mp4
      cacd predict --session rec/night_01 --calib calib/calib.yaml --out figs/ --every 5
      cacd predict --data data/ --split train --pre-annotations pre/ --min-confidence 0.5
    """
    import contextlib

    from common.atomic import removed_on_failure
    from dataset.annotate import PreAnnotationWriter
    from model.checkpoint import load_model, resolve_checkpoint
    from model.predict import NothingToPredict, predict_session_to_folder, predict_to_folder

    ctx = click.get_current_context()
    if session_dir is not None and data_dir is not None:
        raise click.UsageError("--session and --data exclude each other: predict on a recorded "
                               "session or on a built dataset")
    if session_dir is None and calib_file is not None:
        raise click.UsageError("--calib aligns a --session; a built dataset (--data) is aligned "
                               "already")
    if session_dir is not None and \
            ctx.get_parameter_source("split") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--split chooses a split of --data; a --session has none")
    if video is not None and Path(video).suffix.lower() != ".mp4":
        raise click.BadParameter(f"{video!r}: the video is an MP4 file; name it <name>.mp4",
                                 param_hint="--video")
    for hint, value in (("--out", out_dir), ("--video", video), ("--pre-annotations", pre_dir)):
        # found out before any work
        below = next((p for p in Path(value or ".").parents if p.exists() and not p.is_dir()), None)
        if below is not None:
            raise click.BadParameter(f"{str(value)!r}: {below} is a file, not a folder",
                                     param_hint=hint)
    _check_pre_annotation_options(ctx, pre_dir, out_dir)
    ws = _workspace()
    checkpoint = _default_checkpoint(checkpoint, ws)
    session = None
    if session_dir is not None:  # the session and its calibration are checked before the weights
        from dataset.session_pairs import SessionPairs

        session = SessionPairs(session_dir, _session_calibration(calib_file, ws))
    else:
        data_dir = _default_data(data_dir, ws)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = resolve_checkpoint(checkpoint)
    net = load_model(ckpt, device)
    cfg = _sync_data_cfg(_run_config(Path(checkpoint)), net)
    run = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    pre = None if pre_dir is None else PreAnnotationWriter(
        pre_dir, ids=label_ids, min_confidence=min_confidence,
        about=_pre_annotation_about(ckpt, net, data_dir, split, session),
        import_into=str(data_dir) if session is None else "DATA")
    writing = pre if pre is not None else contextlib.nullcontext()
    try:
        if session is None:
            if pre is None:
                out_dir = out_dir or str(run / "predictions")
            with removed_on_failure(out_dir, video, pre_dir), writing:
                paths = predict_to_folder(net, cfg, data_dir, split, out_dir, device,
                                          20 if limit is None and pre is None else limit, every,
                                          video, pre)
        else:
            if pre is None:
                out_dir = out_dir or str(run / "predictions" / session.name)
            with session:  # builds the pairs in a temporary folder, removed when done
                sync = session.report.get("sync", {}).get("summary", "")
                click.echo(f"session: {session.name}: {len(session)} pairs; {sync}", err=True)
                if len(session) == 0:
                    raise click.ClickException(f"{session_dir}: no frame could be paired with a "
                                               f"trigger ({sync}); nothing to predict")
                with removed_on_failure(out_dir, video, pre_dir), writing:
                    paths = predict_session_to_folder(net, cfg, session, out_dir, device, limit,
                                                      every, video, pre)
    except NothingToPredict as err:
        raise click.ClickException(str(err)) from None
    doc: dict[str, object] = {"written": len(paths)}
    if out_dir is not None:
        doc["folder"] = str(out_dir)
    if video is not None:
        doc["video"] = str(video)
    if pre is not None:
        manifest = pre.manifest()
        doc.update({"pre_annotations": str(pre_dir), "labels": manifest["files"]})
        steps = manifest["import"]
        if "before_import" in manifest:  # a session: built first, into DATA
            steps = f"{manifest['before_import']}, then {steps}"
        click.echo(f"pre-annotations: {manifest['files']} label PNGs in {pre_dir} (predictions, "
                   f"not truth: correct them, then {steps})", err=True)
    click.echo(json.dumps(doc))


def _check_pre_annotation_options(ctx: click.Context, pre_dir: Path | None,
                                  out_dir: str | None) -> None:
    """--label-ids and --min-confidence only with --pre-annotations, which must be a new or empty
    folder of its own (never one with labels being corrected in it, nor the panels' --out)."""
    from dataset.annotate import PreAnnotationWriter

    if pre_dir is None:
        for name in ("label_ids", "min_confidence"):
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
                flag = "--" + name.replace("_", "-")
                raise click.UsageError(f"{flag} applies to the pre-annotations; add "
                                       "--pre-annotations DIR")
        return
    try:
        PreAnnotationWriter.check_target(pre_dir)
    except FileExistsError as err:
        raise click.BadParameter(str(err), param_hint="--pre-annotations") from None
    if out_dir is not None:
        pre, out = pre_dir.resolve(), Path(out_dir).resolve()
        if pre == out or pre in out.parents:
            raise click.UsageError(f"{out_dir}: inside --pre-annotations {pre_dir}; give the "
                                   "panels (--out) a folder of their own")


def _pre_annotation_about(ckpt: Path, net, data_dir: str | None, split: str, session) -> dict:
    """What pre_annotations.json records of their origin: the checkpoint (path, sha256, network)
    and the pairs (dataset split, or session + calibration and how to build it for the import)."""
    from dataset.rpea_format import sha256_file

    about: dict[str, object] = {
        "producer": "cacd predict",
        "checkpoint": str(ckpt), "checkpoint_sha256": sha256_file(ckpt),
        "model": {"backbone": net.cfg.backbone, "modalities": net.cfg.modalities,
                  "event_channels": net.cfg.event_channels}}
    if session is None:
        about["source"] = {"data": str(data_dir), "split": split}
    else:
        about["source"] = {"session": str(session.session), "calibration": str(session.calib_path),
                           "calibration_sha256": sha256_file(session.calib_path)}
        about["before_import"] = (f"rpea build --split all --sessions {session.session} --calib "
                                  f"{session.calib_path} --out DATA (the same calibration: the "
                                  "same grid and frame ids)")
    return about
