"""`rpea events`: inspect any common event file, convert it to DSEC HDF5, render it as a video.

Formats (decided by the file's header, `rig.evt.files`): Prophesee RAW EVT 3.0 / 2.0 / 2.1,
Prophesee DAT, jAER AEDAT 2.0, AEDAT 4 (optional decoder), DSEC HDF5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from common.clierrors import Number, positive

CHUNK_MB = Number(float, min=0.001, max=4096, unit="MB")
FORMAT_CHOICES = ("evt3", "evt2", "evt21", "dat", "aedat2", "aedat4", "dsec")
_FORMAT_HELP = ("Format of a file whose header names none (headerless data also needs --width and "
                "--height). A file whose header names its format is read as that format.")


def _layout_options(f: Any) -> Any:
    """--format, --width, --height: how to read a file whose header does not say (info, convert
    and render take the same three)."""
    f = click.option("--height", type=positive(int), default=None,
                     help="Sensor height if the header has none.")(f)
    f = click.option("--width", type=positive(int), default=None,
                     help="Sensor width if the header has none.")(f)
    return click.option("--format", "evt_format", default=None, help=_FORMAT_HELP,
                        type=click.Choice(FORMAT_CHOICES, case_sensitive=False))(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def events() -> None:
    """Inspect, convert and render event files: Prophesee RAW (EVT 3.0, 2.0, 2.1) and DAT, jAER
    AEDAT 2.0, AEDAT 4, DSEC HDF5. The format is read from the file's header, never guessed.

    \b
    Examples:
      rpea events info session/events.raw
      rpea events info recording.dat --json
      rpea events info dvs128.aedat
      rpea events info dump.bin --format evt3 --width 1280 --height 720
      rpea events convert session/events.raw session/events.h5
      rpea events render session/events.raw events.mp4 --fps 25
    """


def _summarise(path: Path, width: int | None, height: int | None, chunk_bytes: int,
               evt_format: str | None = None) -> dict:
    """Stream the file once: counts, rates, triggers per channel/edge, ERC, anomalies."""
    from tqdm import tqdm

    from rig.evt.files import open_events

    reader = open_events(path, evt_format=evt_format, width=width, height=height,
                         chunk_bytes=chunk_bytes)
    n_on = 0
    trig_counts: dict[tuple[int, int], int] = {}
    peak_per_ms = 0
    carry_ms, carry_n = None, 0
    with tqdm(total=reader.progress_total(), unit="B", unit_scale=True, desc="decode",
              disable=None, leave=False) as bar:  # fmt: skip
        for ev, tr in reader:
            n_on += int(ev["p"].sum())
            if ev.size:
                ms, cnt = np.unique(ev["t"] // 1000, return_counts=True)
                if carry_ms is not None and ms[0] == carry_ms:
                    cnt[0] += carry_n
                elif carry_ms is not None:
                    peak_per_ms = max(peak_per_ms, carry_n)
                if cnt.size > 1:
                    peak_per_ms = max(peak_per_ms, int(cnt[:-1].max()))
                carry_ms, carry_n = int(ms[-1]), int(cnt[-1])
            if tr.size:
                keys, cnt = np.unique(tr["id"].astype(np.int64) * 2 + tr["value"], return_counts=True)
                for k, c in zip(keys, cnt, strict=True):
                    key = (int(k) // 2, int(k) % 2)
                    trig_counts[key] = trig_counts.get(key, 0) + int(c)
            bar.update(reader.chunk_bytes)
    peak_per_ms = max(peak_per_ms, carry_n)
    s = reader.stats
    dur_s = s.duration_us / 1e6
    return {
        "file": str(path),
        "format": s.format,
        "geometry": {"width": s.width, "height": s.height, "source": s.geometry_source},
        "header": s.header,
        "bytes": {"header": s.header_bytes, "data": s.data_bytes},
        "words": s.words,
        "word_counts": s.word_counts,
        "skipped_words_before_first_time_high": s.skipped_words,
        "events": {"total": s.events, "on": n_on, "off": s.events - n_on},
        "time_us": {"first": s.t_first_us, "last": s.t_last_us, "duration": s.duration_us},
        "rate_ev_per_s": {"mean": (s.events / dur_s) if dur_s > 0 else None,
                          "peak_1ms": peak_per_ms * 1000},
        "triggers": {"total": s.triggers,
                     "per_channel": {f"{ch}/{'rising' if v else 'falling'}": n
                                     for (ch, v), n in sorted(trig_counts.items())}},
        "erc": {"input_records": s.erc_input_records, "input_events": s.erc_input_events,
                "output_records": s.erc_output_records, "output_events": s.erc_output_events},
        "anomalies": s.anomalies,
        "anomaly_samples": [{"byte_offset": o, "kind": k} for o, k in s.anomaly_samples[:20]],
    }  # fmt: skip


@events.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_layout_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--chunk-mb", type=CHUNK_MB, default=8.0, show_default=True,
              help="Decode chunk size (memory stays bounded by it).")  # fmt: skip
def info(file: Path, evt_format: str | None, width: int | None, height: int | None, as_json: bool,
         chunk_mb: float) -> None:  # fmt: skip
    """Summarise FILE: format, geometry, duration, counts, rates, triggers, ERC, anomalies.

    \b
    Examples:
      rpea events info session/events.raw
      rpea events info recording.dat
    """
    try:
        summary = _summarise(file, width, height, int(chunk_mb * (1 << 20)), evt_format)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from e
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    g = summary["geometry"]
    t = summary["time_us"]
    ev = summary["events"]
    rate = summary["rate_ev_per_s"]
    raw = summary["format"] in ("EVT3", "EVT2", "EVT21")
    geometry = f"{g['width']}x{g['height']}" if g["width"] else "geometry not stated"
    lines = [
        f"file        {summary['file']}",
        f"format      {summary['format']}  {geometry} (from {g['source']})",
    ]
    if raw:
        lines += [
            f"serial      {summary['header'].get('serial_number', '?')}  "
            f"plugin {summary['header'].get('plugin_name', '?')}",
            f"data        {summary['bytes']['data']} bytes, {summary['words']} words"
            f" ({summary['skipped_words_before_first_time_high']} before the first TIME_HIGH)",
        ]
    else:
        lines.append(f"data        {summary['bytes']['data']} bytes after a "
                     f"{summary['bytes']['header']}-byte header")
    lines += [
        f"time        {t['first']} .. {t['last']} us  (duration {t['duration'] / 1e6:.6f} s)",
        f"events      {ev['total']}  (ON {ev['on']}, OFF {ev['off']})",
        "rate        mean "
        + (f"{rate['mean'] / 1e6:.3f} Mev/s" if rate["mean"] else "n/a")
        + f", peak (1 ms) {rate['peak_1ms'] / 1e6:.3f} Mev/s",
        f"triggers    {summary['triggers']['total']}"
        + "".join(f"  [{k}: {n}]" for k, n in summary["triggers"]["per_channel"].items()),
    ]  # fmt: skip
    if raw:
        lines += [
            f"erc         in {summary['erc']['input_records']} records / "
            f"{summary['erc']['input_events']} ev, out {summary['erc']['output_records']} records / "
            f"{summary['erc']['output_events']} ev",
            "words       " + ", ".join(f"{k} {v}" for k, v in summary["word_counts"].items()),
        ]  # fmt: skip
    lines.append("anomalies   " + (", ".join(f"{k} {v}" for k, v in summary["anomalies"].items())
                                   or "none"))
    for a in summary["anomaly_samples"][:10]:
        lines.append(f"            at byte {a['byte_offset']}: {a['kind']}")
    click.echo("\n".join(lines))


@events.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@_layout_options
@click.option("--chunk-mb", type=CHUNK_MB, default=8.0, show_default=True,
              help="Decode chunk size (memory stays bounded by it).")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def convert(file: Path, out: Path, evt_format: str | None, width: int | None, height: int | None,
            chunk_mb: float, force: bool) -> None:  # fmt: skip
    """Convert FILE to OUT.h5 in DSEC's layout: events/x,y,t,p, and /ms_to_idx and /t_offset at
    the file root (DSEC's EventSlicer reads it unchanged).

    Streams in chunks (bounded memory), compresses with Blosc-zstd + bitshuffle (read it with
    `import hdf5plugin`), writes atomically. Trigger edges go to triggers/t,id,value; the sensor
    size to the root attributes width/height. Events that step back in time (real EVT3 streams
    do, by a few us) are sorted, as DSEC's millisecond index needs, and counted.

    \b
    Examples:
      rpea events convert session/events.raw session/events.h5
      rpea events convert recording.dat recording.h5
    """
    from tqdm import tqdm

    from dataset.events import convert_to_dsec

    if out.exists() and not force:
        raise click.ClickException(f"{out} exists (use --force to overwrite)")
    total = max(0, file.stat().st_size)
    try:
        with tqdm(total=total, unit="B", unit_scale=True, desc="convert", disable=None) as bar:
            stats = convert_to_dsec(file, out, evt_format=evt_format, chunk_bytes=int(chunk_mb * (1 << 20)),
                                    width=width, height=height, progress=bar.update)  # fmt: skip
    except (ValueError, OSError) as e:
        msg = str(e)
        raise click.ClickException(msg if str(file) in msg else f"{file}: {msg}") from e
    anomalies = ", ".join(f"{k} {v}" for k, v in stats.anomalies.items()) or "none"
    click.echo(f"wrote {out}: {stats.events} events ({stats.format}), {stats.triggers} trigger "
               f"edges, {stats.width}x{stats.height}; {stats.reordered} events clamped to an earlier "
               f"chunk's last time; anomalies: {anomalies}")


def _mp4(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """A video path must end in .mp4 (so a slip never overwrites an .h5 or a .raw with a video)."""
    if value is not None and value.suffix.lower() != ".mp4":
        raise click.BadParameter(f"{str(value)!r}: the video is an MP4 file; name it <name>.mp4",
                                 ctx, param)
    return value


@events.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path), callback=_mp4)
@click.option("--fps", type=Number(float, min=0, min_open=True, max=10_000), default=25.0,
              show_default=True, help="Frames per second of the video (Metavision's export: 25).")
@click.option("--accumulation-ms", type=Number(float, min=0.001, max=10_000, unit="ms"), default=None,
              help="Events shown per frame: those of the last MS milliseconds before the frame's "
                   "time; longer than the frame period leaves trails [default: 1000/fps].")
@click.option("--start-s", type=Number(float, min=0, unit="s"), default=0.0, show_default=True,
              help="Start this many seconds after the file's first event.")
@click.option("--duration-s", type=positive(float, unit="s"), default=None,
              help="Render this many seconds (duration x fps frames) [default: to the last event].")
@click.option("--scale", type=Number(float, min=0, min_open=True, max=16), default=1.0,
              show_default=True, help="Resize the sensor picture (e.g. 4 for a 128x128 DVS).")
@_layout_options
@click.option("--chunk-mb", type=CHUNK_MB, default=8.0, show_default=True,
              help="Decode chunk size (memory stays bounded by it).")  # fmt: skip
def render(file: Path, out: Path, fps: float, accumulation_ms: float | None, start_s: float,
           duration_s: float | None, scale: float, evt_format: str | None, width: int | None,
           height: int | None, chunk_mb: float) -> None:  # fmt: skip
    """Render FILE into the MP4 video OUT, as Metavision's viewer exports a recording: one frame
    every 1/fps seconds showing the events of the last accumulation time (ON blue, OFF orange, on
    white).

    Reads every format `events info` reads, in chunks (an hours-long file is never loaded whole).
    Times count from the file's first event. A damaged file renders as far as it is valid and the
    warning says where it broke. OUT appears only when the video is complete.

    \b
    Examples:
      rpea events render session/events.raw events.mp4
      rpea events render session/events.raw slow.mp4 --fps 250 --accumulation-ms 10 --duration-s 2
      rpea events render dvs128.aedat blink.mp4 --scale 4 --accumulation-ms 100
    """
    from common.progress import progress_bar
    from common.video import VideoError
    from dataset.event_video import describe_anomalies, frame_count, render_event_video

    total = frame_count(duration_s, fps) if duration_s is not None else None
    try:
        with progress_bar(desc="render", total=total, unit="frame") as bar:
            res = render_event_video(
                file, out, fps=fps, accumulation_us=None if accumulation_ms is None
                else round(accumulation_ms * 1000), start_us=round(start_s * 1e6),
                duration_us=None if duration_s is None else round(duration_s * 1e6), scale=scale,
                evt_format=evt_format, width=width, height=height,
                chunk_bytes=int(chunk_mb * (1 << 20)), progress=bar.update)
    except (ValueError, OSError, VideoError) as e:
        msg = str(e)
        raise click.ClickException(msg if str(file) in msg or str(out) in msg else f"{file}: {msg}") from e
    assert res.t_start_us is not None and res.t_end_us is not None and res.t_first_us is not None
    t0 = (res.t_start_us - res.t_first_us) / 1e6
    t1 = (res.t_end_us - res.t_first_us) / 1e6
    size = f"{res.out_width}x{res.out_height}" + (f" (sensor {res.width}x{res.height})"
                                                   if scale != 1.0 else "")
    frames = f"{res.frames} frame{'s' if res.frames != 1 else ''}"
    click.echo(f"wrote {out}: {frames} at {fps:g} fps, {size}, {t0:.3f} .. {t1:.3f} s "
               f"after the first event (at {res.t_first_us} us), accumulation "
               f"{res.accumulation_us / 1000:g} ms, {res.events_shown} events shown ({res.format})")
    if res.ended_early:
        click.echo(f"note: the events end before the {duration_s:g} s asked: {res.frames} of "
                   f"{res.expected_frames} frames")
    broken, quirks = describe_anomalies(res)
    if broken:
        click.echo(f"warning: {broken}; rendered as far as the data is valid", err=True)
    if quirks:
        click.echo(f"note: the decoder met {quirks} (rpea events info {file} lists them)")
