"""`rpea export`: the dataset in another tool's layout (mmsegmentation's Cityscapes)."""

from __future__ import annotations

from pathlib import Path

import click

from dataset.splits import SPLITS


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(["cityscapes"]), required=True,
              help="cityscapes: leftImg8bit/ + gtFine/ (*_gtFine_labelTrainIds.png), what "
                   "mmsegmentation's CityscapesDataset reads.")
@click.argument("data_dir", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder to write (the data_root).")
@click.option("--split", "splits", multiple=True, type=click.Choice(list(SPLITS)),
              help="Only this split (repeatable) [default: every split there is].")
@click.option("--include-unlabelled", is_flag=True,
              help="Export unlabelled pairs too (their label maps are all 255 = ignore).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(fmt: str, data_dir: Path | None, out: Path, splits: tuple[str, ...],
           include_unlabelled: bool, quiet: bool) -> None:
    """Export images and labels for another tool (mmsegmentation's Cityscapes layout).

    DATA_DIR is an RPEA dataset (`rpea build` output) or one split's folder [default: the
    workspace's data/]. Files already there with the right pixels are kept, so running it again
    finishes an interrupted export. Events are not exported.

    \b
    Examples:
      rpea export --format cityscapes -o cityscapes/          # the workspace's data/
      rpea export --format cityscapes data/ -o /mnt/mmseg/rpea --split train --split val

    \b
    mmsegmentation config:
      data_root = 'cityscapes/'   # CityscapesDataset, img_path='leftImg8bit/train',
                                  # seg_map_path='gtFine/train' (see docs/dataset.md)
    """
    from common.workspace import WorkspaceError, load_workspace, show_path
    from dataset.export import export_cityscapes

    if data_dir is None:
        try:
            ws = load_workspace()
        except WorkspaceError as exc:
            raise click.ClickException(str(exc)) from None
        if not ws.data.is_dir():
            raise click.ClickException(f"no dataset at {ws.show(ws.data)} ({ws.origin('data')}): "
                                       "build one with rpea build --split train, or give DATA_DIR")
        data_dir = ws.data
        click.echo(f"dataset: {ws.show(data_dir)} ({ws.origin('data')})", err=True)
    try:
        summary = export_cityscapes(data_dir, out, splits=splits or None,
                                    include_unlabelled=include_unlabelled, progress=not quiet)
    except (ValueError, OSError) as err:  # ExportError, RPEAFormatError: they name the file
        raise click.ClickException(str(err)) from None
    for split, c in summary.splits.items():
        left = f", {c.unlabelled} unlabelled left out" if c.unlabelled else ""
        click.echo(f"{split}: {c.pairs} pairs ({c.written} files written, {c.kept} already there"
                   f"{left})")
    for note in summary.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {show_path(out)} ({fmt}: data_root for mmsegmentation's CityscapesDataset)")
