"""The `cacd` command: train, evaluate, predict and benchmark the CACD segmentation model."""

from __future__ import annotations

import click

from common.clierrors import CommandGroup

# name -> "module:click command"; a subcommand's module is imported only when it is used
LAZY = {
    "train": "model.cli_run:train_cmd",
    "eval": "model.cli_run:eval_cmd",
    "predict": "model.cli_run:predict_cmd",
    "bench": "model.cli_tools:bench_cmd",
    "masks": "model.cli_tools:masks_cmd",
    "synth": "model.cli_tools:synth_cmd",
}


@click.group(cls=CommandGroup, lazy_commands=LAZY, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """CACD: event + frame semantic segmentation (MiT encoders, HFCA, JBCD, SegFormer decoder).

    \b
    Examples:
      cacd train --data data/ --out runs/compact            # compact CPU preset, minutes
      cacd train --data data/ --out runs/paper --config paper.yaml
      torchrun --nproc_per_node 2 -m model.cli train --data data/ --out runs/ddp
      cacd eval --checkpoint runs/compact --data data/ --misalign 0,1,2,4,8
      cacd predict --checkpoint runs/compact --data data/ --out figs/
      cacd bench --backbone mit_b5
      cacd masks data/ --provider graph
    """


if __name__ == "__main__":
    main()
