"""`rig check`: a preflight of the configured rig (or the simulated one) before recording."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from common.clierrors import positive, pulse_indices


@click.command("check")
@click.option("--sim/--hardware", "sim", default=None,
              help="The simulated rig (default when no hardware is configured) or the real one.")
@click.option("--rig-config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="rig.yaml of the hardware [default: the workspace's rig.yaml].")
@click.option("--pulses", type=positive(int), default=None,
              help="Trigger pulses in the burst [default: 200 on hardware, 30 on the simulated rig].")
@click.option("--rate", "rate_hz", type=positive(float, "Hz"), default=None,
              help="Trigger rate of the burst [default: rig.yaml's, else 20].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A folder on the disk the recordings go to: its write speed is measured and the "
                   "burst is recorded into a temporary folder inside it, removed afterwards "
                   "[default: the workspace's recordings folder].")
@click.option("--trigger", "trigger_port", default=None,
              help="Trigger MCU port or URL instead of rig.yaml's (or of the simulated MCU), e.g. "
                   "socket://127.0.0.1:5678 for the firmware emulator.")
@click.option("--quick", is_flag=True, help="Disk test with 64 MB instead of 256 MB.")
@click.option("--keep", is_flag=True, help="Keep the burst session (OUT/check_<time>).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results to this JSON file.")
@click.option("--drop-frames", default=None, callback=pulse_indices,
              help="(sim) Comma-separated pulse indices whose frames are lost: see a check fail.")
@click.option("--seed", type=int, default=0, show_default=True, help="(sim) Simulator seed.")
@click.option("--exposure-offset", "offset_sessions", nargs=2, default=None,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              metavar="OR_SESSION EA_SESSION",
              help="Instead of the preflight: the trigger-to-exposure offset from two recordings "
                   "(docs/hardware.md, 'Measuring the trigger-to-exposure offset').")
def check(sim: bool | None, rig_config: Path | None, pulses: int | None, rate_hz: float | None,
          out_dir: Path | None, trigger_port: str | None, quick: bool, keep: bool,
          json_path: Path | None, drop_frames: list[int] | None, seed: int,
          offset_sessions: tuple[Path, Path] | None) -> None:
    """Preflight: record a short burst and check the rig before a recording that matters.

    \b
    Checks (docs/hardware.md, "Preflight: rig check"):
      trigger counts   pulses sent = frames received = rising EXT_TRIGGER edges
      trigger-in       the event camera's trigger input is enabled on the wired channel
      pairing          every pulse pairs with one frame and one edge
      clock drift      frame camera and MCU clocks against the event camera's, in ppm
      disk speed       write speed of the recordings' disk vs the event camera's peak rate

    Prints one line per check; exits 0 when all pass, 1 otherwise.

    \b
    Examples:
      rig check --sim                          # the simulated rig, a few seconds
      rig check --hardware --rig-config rig.yaml --pulses 400 --rate 20
      rig check --out /mnt/ssd/recordings      # the disk the recordings will go to
      rig check --sim --drop-frames 5          # see the count check fail
      rig check --exposure-offset offset_or offset_ea
    """
    from common.workspace import WorkspaceError, load_workspace
    from rig.check import DISK_TEST_BYTES, QUICK_DISK_BYTES, CheckOptions, exposure_offset, run_check
    from rig.recorder import RecordError
    from rig.registry import BackendUnavailable
    from rig.rigconfig import RIG_CONFIG_FILE, RigConfigError, choose_rig, load_rig_config

    if offset_sessions is not None:
        try:
            click.echo(exposure_offset(*offset_sessions).format())
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        return
    if sim and rig_config is not None:
        raise click.UsageError(f"--rig-config {rig_config}: the simulated rig (--sim) reads no rig "
                               "config; leave --rig-config out, or check the hardware with --hardware")
    try:
        ws = load_workspace()
    except WorkspaceError as exc:
        raise click.ClickException(str(exc)) from None
    choice = choose_rig(sim, rig_config, backends_named=False, workspace_root=ws.root)
    sim, rig_config = choice.sim, choice.rig_config
    if drop_frames and not sim:
        raise click.UsageError("--drop-frames only applies to the simulated rig")
    if not sim:
        if rig_config is None:
            raise click.ClickException(
                f"{ws.show(ws.root / RIG_CONFIG_FILE)}: no rig config for --hardware; copy "
                "configs/rig.example.yaml there and name your cameras, or give --rig-config FILE")
        try:
            load_rig_config(rig_config)
        except RigConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if choice.note:
        click.echo(choice.note.replace("Recording on", "Checking").replace("recording on", "checking"),
                   err=True)
    folder = out_dir if out_dir is not None else ws.recordings
    opts = CheckOptions(out_dir=folder, sim=sim, rig_config=rig_config, pulses=pulses, rate_hz=rate_hz,
                        trigger_port=trigger_port, seed=seed,
                        sim_faults={"drop_frames": drop_frames} if drop_frames else {},
                        disk_bytes=QUICK_DISK_BYTES if quick else DISK_TEST_BYTES, keep=keep,
                        show_status=sys.stderr.isatty())  # the burst's live line, on a terminal
    try:
        result = run_check(opts)
    except (RecordError, BackendUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.format())
    if json_path is not None:
        json_path.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    if not result.passed:
        raise SystemExit(1)
