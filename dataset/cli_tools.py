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
    problems = check_root(root, alignment=not no_alignment, checksums=not no_checksums)
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
    """Class-pixel distribution (log scale), scene / time-of-day distribution, conditions.

    Writes class_pixels.png (paper Fig. 3b), scene_time.png (Fig. 3c), stats.md and stats.json.

    \b
    Example:
      rpea stats data/ --out figures/
    """
    import json

    from common.atomic import write_json_atomic, write_text_atomic
    from dataset.stats import collect, figures, table
    from dataset.visual import save_rgb

    try:
        st = collect(root)
    except FileNotFoundError as err:  # names the folder or the file itself
        raise click.ClickException(str(err)) from None
    except (OSError, KeyError, json.JSONDecodeError) as err:
        raise click.ClickException(f"{root}: {err}") from None
    out = out or root / "stats"  # made only once there is something to write into it
    out.mkdir(parents=True, exist_ok=True)
    for name, img in figures(st).items():
        save_rgb(out / f"{name}.png", img)
    text = table(st)
    write_text_atomic(out / "stats.md", text)
    write_json_atomic(out / "stats.json", st.to_dict())
    click.echo(text)
    click.echo(f"figures: {out / 'class_pixels.png'}, {out / 'scene_time.png'}")


def _locate(root: Path, split: str | None, sequence: str | None, index: int) -> tuple[Path, int]:
    from dataset.annotate import iter_sequences

    try:
        seqs = [(d, s) for d, s in iter_sequences(root, split)
                if not sequence or s["name"] == sequence]
    except FileNotFoundError as err:  # not a dataset: the message names the folder
        raise click.ClickException(str(err)) from None
    if not seqs:
        raise click.ClickException(f"{root}: no sequence matches (split={split}, sequence={sequence})")
    i = index
    for d, s in seqs:
        if i < s["num_pairs"]:
            return d / s["file"], i
        i -= s["num_pairs"]
    total = sum(s["num_pairs"] for _, s in seqs)
    raise click.ClickException(f"--index {index} out of range: {total} pairs")


@click.command("show")
@click.argument("root", type=DIR)
@click.option("--index", "index", type=Number(int, min=0), required=True,
              help="Pair number (over the split).")
@click.option("--split", default=None, help="Split folder [default: all, in order].")
@click.option("--sequence", default=None, help="Count the index inside this sequence only.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG path [default: pair_<index>.png].")
def show(root: Path, index: int, split: str | None, sequence: str | None, out: Path | None) -> None:
    """A PNG of one pair: RGB | events | overlay (| labels).

    \b
    Examples:
      rpea show data/ --index 0
      rpea show data/ --split val --sequence night_01 --index 12 --out pair.png
    """
    from dataset.annotate import pair_views
    from dataset.reader import open_sequence_file
    from dataset.visual import panel, save_rgb

    path, i = _locate(root, split, sequence, index)
    with open_sequence_file(path) as f:
        v = pair_views(f, i)
        fid = int(f["pairs/frame_id"][i])
    names = ["rgb", "events", "overlay"] + (["label"] if "label" in v else [])
    caps = ["RGB", "events", "overlay", "labels"][:len(names)]
    img = panel([v[k] for k in names], caps)
    out = out or Path(f"pair_{index}.png")
    save_rgb(out, img)
    click.echo(f"{out}  ({path.stem}, pair {i}, frame id {fid})")


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
