"""`rpea check | stats | show | export-annotation | import-labels`: RPEA dataset tools."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from common.clierrors import Number, positive

DIR = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("check")
@click.argument("root", type=DIR)
@click.option("--no-alignment", is_flag=True, help="Skip the event/image alignment sanity check.")
@click.option("--no-checksums", is_flag=True, help="Skip the sha256 comparison with index.json.")
def check(root: Path, no_alignment: bool, no_checksums: bool) -> None:
    """Validate an RPEA dataset: schema, counts, checksums, event windows, alignment.

    Exits non-zero when any error is found.

    \b
    Examples:
      rpea check data/
      rpea check data/val --no-alignment
    """
    from dataset.rpea_check import check_root

    if not (root / "index.json").is_file() and not any(
            (p / "index.json").is_file() for p in root.iterdir() if p.is_dir()):
        raise click.ClickException(f"{root}: no index.json here nor in any subfolder: not an RPEA "
                                   "dataset; give the folder rpea build wrote (e.g. data/)")
    problems = check_root(root, alignment=not no_alignment, checksums=not no_checksums,
                          progress=True)
    for p in problems:
        click.echo(str(p))
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    click.echo(f"{root}: {errors} error(s), {warnings} warning(s)")
    if errors:
        sys.exit(1)


@click.command("stats")
@click.argument("root", type=DIR)
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the PNGs and tables [default: <root>/stats].")
def stats(root: Path, out: Path | None) -> None:
    """Class-pixel distribution (log scale), scene / time-of-day distribution, exposure.

    Writes class_pixels.png (paper Fig. 3b: all / day / night pairs), scene_time.png (Fig. 3c),
    exposure.png (pixel and frame brightness, under- / over-exposed share per condition),
    stats.md and stats.json. Reads every image once, one pair at a time.

    \b
    Example:
      rpea stats data/ --out figures/
    """
    import json

    from common.atomic import removed_on_failure, write_json_atomic, write_text_atomic
    from dataset.reader import RPEAFormatError
    from dataset.stats import collect, table

    try:
        st = collect(root)
    except FileNotFoundError as err:  # names the folder or the file itself
        raise click.ClickException(str(err)) from None
    except RPEAFormatError as err:  # names the file
        raise click.ClickException(str(err)) from None
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise click.ClickException(f"{root}: {err}") from None
    from dataset.figures import write_figures

    out = out or root / "stats"  # made only once there is something to write into it
    with removed_on_failure(out):
        out.mkdir(parents=True, exist_ok=True)
        pngs = write_figures(st, out)
        text = table(st)
        write_text_atomic(out / "stats.md", text)
        write_json_atomic(out / "stats.json", st.to_dict())
    click.echo(text)
    click.echo("figures: " + ", ".join(str(p) for p in pngs))


def _sequences(root: Path, split: str | None) -> list[tuple[Path, dict]]:
    """(split folder, index entry) of the sequences under `root` (one split if given)."""
    from dataset.annotate import iter_sequences

    try:
        seqs = list(iter_sequences(root, split))
    except FileNotFoundError as err:  # not a dataset: the message names the folder
        raise click.ClickException(str(err)) from None
    if split and not seqs:
        raise click.ClickException(f"{root}: no split {split!r} with sequences here; drop --split "
                                   "or name a split folder of this dataset")
    return seqs


def _names(seqs: list[tuple[Path, dict]], most: int = 8) -> str:
    names = [f"{d.name}/{s['name']}" for d, s in seqs]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _find_sequence(root: Path, split: str | None, sequence: str | None) -> Path:
    """The file of the sequence `--sequence` names (a video plays one sequence)."""
    seqs = _sequences(root, split)
    if not sequence:
        raise click.UsageError(f"{root}: --video plays one sequence: name it with --sequence "
                               f"(here: {_names(seqs)})")
    found = [(d, s) for d, s in seqs if s["name"] == sequence]
    if not found:
        where = f" in split {split!r}" if split else ""
        raise click.ClickException(f"{root}: no sequence {sequence!r}{where}; the sequences are: "
                                   f"{_names(seqs)}")
    if len(found) > 1:
        raise click.ClickException(f"{root}: sequence {sequence!r} is in several splits "
                                   f"({', '.join(d.name for d, _ in found)}); choose with --split")
    d, s = found[0]
    return d / s["file"]


def _mp4(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A video path must end in .mp4 (so a slip never overwrites a dataset file with a video)."""
    if value is not None and value.suffix.lower() != ".mp4":
        raise click.BadParameter(f"{str(value)!r}: the video is an MP4 file; name it <name>.mp4",
                                 ctx, param)
    return value


def _locate(root: Path, split: str | None, sequence: str | None, index: int) -> tuple[Path, int]:
    seqs = _sequences(root, split)
    picked = [(d, s) for d, s in seqs if not sequence or s["name"] == sequence]
    if not picked:
        if sequence:
            raise click.ClickException(f"{root}: no sequence {sequence!r}; the sequences are: "
                                       f"{_names(seqs)}")
        raise click.ClickException(f"{root}: no sequence matches (split={split}, sequence={sequence})")
    i = index
    for d, s in picked:
        if i < s["num_pairs"]:
            return d / s["file"], i
        i -= s["num_pairs"]
    total = sum(s["num_pairs"] for _, s in picked)
    raise click.ClickException(f"--index {index} out of range: {total} pairs")


@click.command("show")
@click.argument("root", type=DIR)
@click.option("--index", "index", type=Number(int, min=0), default=None,
              help="Pair number (over the split) of the PNG; needed without --video.")
@click.option("--split", default=None, help="Split folder [default: all, in order].")
@click.option("--sequence", default=None,
              help="Count the index inside this sequence only; with --video, the sequence to play.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG path [default: pair_<index>.png].")
@click.option("--video", "video", type=click.Path(dir_okay=False, path_type=Path), default=None,
              callback=_mp4,
              help="Write the whole sequence as an MP4 instead: one picture per pair, at the "
                   "recording rate.")
@click.option("--start", type=Number(int, min=0), default=0, show_default=True,
              help="--video: the first pair shown.")
@click.option("--limit", type=positive(int), default=None, help="--video: at most this many pairs.")
@click.option("--every", type=positive(int), default=1, show_default=True,
              help="--video: every n-th pair (the rate is divided by n: still real time).")
@click.option("--fps", type=Number(float, min=0, min_open=True, max=1000), default=None,
              help="--video: frames per second [default: the recording rate].")
def show(root: Path, index: int | None, split: str | None, sequence: str | None, out: Path | None,
         video: Path | None, start: int, limit: int | None, every: int, fps: float | None) -> None:
    """A PNG of one pair: RGB | events | overlay (| labels); or, with --video, an MP4 of a whole
    sequence, one such picture per pair at the recording rate.

    \b
    Examples:
      rpea show data/ --index 0
      rpea show data/ --split val --sequence night_01 --index 12 --out pair.png
      rpea show data/ --sequence night_01 --video night_01.mp4
      rpea show data/ --sequence night_01 --video preview.mp4 --every 4 --limit 100
    """
    if video is not None:
        _show_video(root, split, sequence, video, index, out, start, limit, every, fps)
        return
    if index is None:
        raise click.UsageError("Missing option '--index' (the pair to draw), or --video OUT.mp4 "
                               "with --sequence NAME for a whole sequence")
    video_only = [o for o, v in (("--start", start != 0), ("--limit", limit is not None),
                                 ("--every", every != 1), ("--fps", fps is not None)) if v]
    if video_only:
        raise click.UsageError(f"{', '.join(video_only)} only with --video")
    from dataset.playback import pair_picture
    from dataset.reader import open_sequence_file
    from dataset.visual import save_rgb

    path, i = _locate(root, split, sequence, index)
    with open_sequence_file(path) as f:
        img = pair_picture(f, i, name=path.stem)
        fid = int(f["pairs/frame_id"][i])
    out = out or Path(f"pair_{index}.png")
    save_rgb(out, img)
    click.echo(f"{out}  ({path.stem}, pair {i}, frame id {fid})")


def _show_video(root: Path, split: str | None, sequence: str | None, video: Path,
                index: int | None, out: Path | None, start: int, limit: int | None, every: int,
                fps: float | None) -> None:
    """`rpea show --video`: the sequence as an MP4 (dataset.playback)."""
    from common.progress import progress_bar
    from common.video import VideoError
    from dataset.playback import write_sequence_video

    if index is not None or out is not None:
        raise click.UsageError("--index and --out draw one PNG; --video plays the sequence "
                               "(choose its pairs with --start, --limit, --every)")
    path = _find_sequence(root, split, sequence)
    bar = progress_bar(desc="video", unit="pair")

    def planned(frames: int, rate: float, source: str) -> None:
        bar.reset(total=frames)

    try:
        with bar:
            res = write_sequence_video(path, video, start=start, limit=limit, every=every, fps=fps,
                                       progress=bar.update, on_plan=planned)
    except (ValueError, KeyError, OSError, VideoError) as err:
        msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        raise click.ClickException(msg if str(path) in msg or str(video) in msg
                                   else f"{path}: {msg}") from None
    click.echo(f"wrote {video}: {res.frames} pairs of {path.stem} (pairs {res.first_pair}.."
               f"{res.last_pair}), {res.width}x{res.height}, {res.fps:g} fps ({res.fps_source})")


@click.command("export-annotation")
@click.argument("root", type=DIR)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: <out>/<sequence>/frame_<id>_annot.png and _rgb.png.")
@click.option("--split", default=None, help="Only this split.")
@click.option("--sequence", default=None, help="Only this sequence.")
@click.option("--every", type=positive(int), default=1, show_default=True, help="Every n-th pair.")
def export_annotation(root: Path, out: Path, split: str | None, sequence: str | None, every: int) -> None:
    """Side-by-side RGB | event frame | overlay per pair, as the paper's annotators saw them.

    Annotations drawn on these go back in with `rpea import-labels` (same frame ids).

    \b
    Example:
      rpea export-annotation data/ --split train --out annot/
    """
    from common.atomic import removed_on_failure
    from dataset.annotate import export_annotation as run

    try:
        with removed_on_failure(out):
            n = run(root, out, split=split, sequence=sequence, every=every)
    except (FileNotFoundError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{n} pairs exported to {out}")


@click.command("import-labels")
@click.argument("root", type=DIR)
@click.option("--labels", "labels", required=True, type=DIR,
              help="Annotation PNGs: <labels>/<sequence>/frame_<id>*.png (one channel).")
@click.option("--ids", type=click.Choice(["label", "train"]), default="label", show_default=True,
              help="Cityscapes label ids (0..33) or train ids (0..18, 255).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="YAML {source id: train id}; overrides --ids.")
@click.option("--split", default=None, help="Only this split.")
def import_labels(root: Path, labels: Path, ids: str, mapping: Path | None, split: str | None) -> None:
    """Write annotation PNGs into built sequences (validated; index updated).

    \b
    Examples:
      rpea import-labels data/ --labels annotations/ --ids label
      rpea import-labels data/ --labels cvat_out/ --mapping my_ids.yaml
    """
    from dataset.annotate import import_labels as run
    from dataset.labels import LabelError, load_mapping

    try:
        table = load_mapping(mapping) if mapping else None
        done = run(root, labels, ids=ids, mapping=table, split=split)
    except (LabelError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from None
    if not done:
        raise click.ClickException(f"{labels}: no annotation matched any sequence "
                                   "(expected <labels>/<sequence>/frame_<id>*.png)")
    for name, n in done.items():
        click.echo(f"{name}: {n} labels imported")
