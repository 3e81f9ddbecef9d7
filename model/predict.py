"""Colour overlays of predictions (the paper's Fig. 6 layout): RGB | events | prediction over RGB
| ground truth, one PNG panel per pair and optionally one MP4 of the panels, from a built dataset
split (`cacd predict --data`) or a recorded session built on the fly (`cacd predict --session`,
`dataset.session_pairs`). Both go through the same network call and drawing, so a session gives
exactly the overlays its `rpea build` output gives.

With a `dataset.annotate.PreAnnotationWriter` the same predictions of the pairs that have no
labels also become pre-annotations (`cacd predict --pre-annotations`): label PNGs that `rpea
import-labels` takes back, for annotators to correct instead of drawing from scratch."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from common.video import VideoWriter
from dataset.labels import colorize
from dataset.reader import to_working_resolution
from dataset.visual import OFF_RGB, ON_RGB, label_overlay, panel, save_rgb
from model.data import collate, make_dataset, to_device
from model.evaluate import predict_logits

if TYPE_CHECKING:
    from dataset.annotate import PreAnnotationWriter
    from dataset.session_pairs import SessionPairs

#: Where the recording rate cannot be read from the pairs' times (one pair): the rig's default.
FALLBACK_RATE_HZ = 20.0


def event_rgb(events: np.ndarray) -> np.ndarray:
    """A viewable picture of a representation (C, H, W): ON blue, OFF orange on white (the colours of
    `dataset.visual`, told apart without red-green vision); a voxel grid by the sign of its sum."""
    if events.shape[0] == 3:  # event frame: ON count, OFF count (normalised to [0, 1]), time
        on, off = np.clip(events[0], 0, 1), np.clip(events[1], 0, 1)
    else:
        s = events.sum(0)
        on, off = np.clip(s, 0, None), np.clip(-s, 0, None)
        m = max(float(max(on.max(), off.max())), 1e-6)
        on, off = on / m, off / m
    # square root: a single event (a faint count after normalisation) stays visible
    a_on, a_off = np.sqrt(on)[..., None], np.sqrt(off)[..., None]
    img = np.full(events.shape[1:] + (3,), 255.0, np.float32)
    img = img * (1 - a_on) + np.array(ON_RGB, np.float32) * a_on
    img = img * (1 - a_off) + np.array(OFF_RGB, np.float32) * a_off
    return np.clip(img, 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Train ids in the Cityscapes palette blended over the RGB image."""
    col = colorize(ids).astype(np.float32)
    return np.clip((1 - alpha) * image.astype(np.float32) + alpha * col, 0, 255).astype(np.uint8)


def captioned(tile: np.ndarray, words: list[tuple[str, tuple[int, int, int]]]) -> np.ndarray:
    """`tile` under a white strip with `words` (text, RGB colour) written left to right; the text
    grows with the tile (22 rows up to 480 columns, as `dataset.visual.caption`), so a caption
    stays readable on a full-size panel too."""
    h, w = tile.shape[:2]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.45 * max(1.0, w / 480)
    grow = scale / 0.45
    strip = np.full((int(round(22 * grow)), w, 3), 255, np.uint8)
    thick = 1 if grow < 1.6 else 2
    x = int(round(4 * grow))
    for text, colour in words:
        cv2.putText(strip, text, (x, int(round(16 * grow))), font, scale, colour, thick,
                    cv2.LINE_AA)
        x += cv2.getTextSize(text + " ", font, scale, thick)[0][0]
    return np.vstack([strip, tile])


def render_panel(image: np.ndarray, events: np.ndarray, pred: np.ndarray,
                 label: np.ndarray | None, title: str = "") -> np.ndarray:
    """One pair as a captioned panel: RGB | events | prediction over RGB | ground truth (when
    `label` is given; 255 = ignore is dimmed). `title` goes on the RGB tile's caption."""
    black = (0, 0, 0)
    tiles = [captioned(image, [(title or "RGB", black)]),
             captioned(event_rgb(events), [("events", black), ("ON", ON_RGB), ("OFF", OFF_RGB)]),
             captioned(overlay(image, pred), [("prediction", black)])]
    if label is not None:
        tiles.append(captioned(label_overlay(image, label, 0.55), [("ground truth", black)]))
    return panel(tiles)


@torch.inference_mode()
def predict_ids(net: Any, image: torch.Tensor, events: torch.Tensor,
                device: torch.device, short_side: int | None = None) -> np.ndarray:
    """Train ids (H, W) uint8 of one pair: `image` (3, H, W) uint8, `events` (C, H, W) float32,
    as `RPEADataset` serves them at the grid's resolution; the network sees them at the run's
    working resolution (`data.short_side`) and its scores are upsampled to (H, W)."""
    batch = _network_batch(image, events, short_side, device)
    size = (int(image.shape[1]), int(image.shape[2]))
    return predict_logits(net, batch, size=size).argmax(1)[0].cpu().numpy().astype(np.uint8)


def _network_batch(image: torch.Tensor, events: torch.Tensor, short_side: int | None,
                   device: torch.device) -> dict[str, Any]:
    """One pair as the network saw pairs in training: shrunk to the working resolution."""
    if short_side:
        small_image, small_events = to_working_resolution(image.permute(1, 2, 0).numpy(),
                                                          events.numpy(), short_side)
        image = torch.from_numpy(np.ascontiguousarray(small_image.transpose(2, 0, 1)))
        events = torch.from_numpy(np.ascontiguousarray(small_events))
    return to_device(collate([{"image": image, "events": events}]), device)


@torch.inference_mode()
def predict_ids_confidence(net: Any, image: torch.Tensor, events: torch.Tensor,
                           device: torch.device, short_side: int | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Train ids (H, W) uint8 as `predict_ids` gives them (the same network call and argmax), and
    the predicted class's softmax probability (H, W) float32 at each pixel."""
    batch = _network_batch(image, events, short_side, device)
    logits = predict_logits(net, batch, size=(int(image.shape[1]), int(image.shape[2])))[0]
    ids = logits.argmax(0)
    confidence = torch.softmax(logits, 0).gather(0, ids[None])[0]
    return ids.cpu().numpy().astype(np.uint8), confidence.cpu().numpy().astype(np.float32)


class NothingToPredict(ValueError):
    """The pairs asked for are none (e.g. every pair has labels, so none needs pre-annotation)."""


@dataclass
class _Pair:
    """What a panel needs: tensors as the network takes them, the label, the PNG's name; and
    where a pre-annotation of it goes (sequence name, frame id)."""

    name: str
    title: str  # the RGB tile's caption: which pair it is
    image: torch.Tensor  # (3, H, W) uint8
    events: torch.Tensor  # (C, H, W) float32
    label: np.ndarray | None  # (H, W) uint8 train ids
    sequence: str = ""  # the sequence's name as rpea build indexes it
    frame_id: int = -1


def chosen(n: int, limit: int | None = None, every: int = 1) -> range:
    """Pairs 0, every, 2*every, ... of `n`, at most `limit` of them."""
    picked = range(0, n, max(1, int(every)))
    return picked if limit is None else picked[:max(0, int(limit))]


def _write(net: Any, pairs: Iterator[_Pair], total: int, out: Path | None, device: torch.device,
           video: str | Path | None, fps: float, desc: str,
           pre_annotations: PreAnnotationWriter | None = None,
           short_side: int | None = None) -> list[Path]:
    """Predict every pair (at the run's working resolution `short_side`); draw and save its panel
    (unless `out` is None), append it to the video, write its pre-annotation; the PNG paths."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    net.eval()
    written: list[Path] = []
    with VideoWriter(video, fps) if video is not None else contextlib.nullcontext() as writer:
        for p in tqdm(pairs, total=total, desc=desc, unit="pair", disable=None):
            pred, confidence = predict_ids_confidence(net, p.image, p.events, device, short_side)
            if pre_annotations is not None:
                pre_annotations.add(p.sequence, p.frame_id, pred, confidence)
            if out is None and writer is None:
                continue
            image = p.image.permute(1, 2, 0).numpy()
            picture = render_panel(image, p.events.numpy(), pred, p.label, p.title)
            if out is not None:
                path = out / f"{p.name}.png"
                save_rgb(path, picture)
                written.append(path)
            if writer is not None:
                writer.write(picture)
    return written


def _sequence_names(root: str | Path, split: str) -> dict[str, str]:
    """File name -> sequence name (what `rpea import-labels` calls its folder) from the split's
    index.json; a file the index does not list is named by its stem."""
    try:
        entries = json.loads((Path(root) / split / "index.json").read_text())["sequences"]
        return {str(s["file"]): str(s["name"]) for s in entries}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def rate_hz(pairs: dict[str, np.ndarray]) -> float | None:
    """A sequence's recording rate from its pairs' frame times (pulses apart where the file says
    which pulse each pair answers, so dropped pairs do not slow it down); None with one pair."""
    t = np.asarray(pairs.get("frame_t_us", []), np.float64)
    if t.size < 2:
        return None
    steps = np.diff(np.asarray(pairs["pulse_index"], np.float64)) if "pulse_index" in pairs \
        else np.ones(t.size - 1)
    ok = steps > 0
    period_us = np.median(np.diff(t)[ok] / steps[ok]) if ok.any() else 0.0
    return float(1e6 / period_us) if period_us > 0 else None


def predict_to_folder(net: Any, cfg: dict, root: str | Path, split: str, out: str | Path | None,
                      device: str | torch.device = "cpu", limit: int | None = None,
                      every: int = 1, video: str | Path | None = None,
                      pre_annotations: PreAnnotationWriter | None = None) -> list[Path]:
    """One PNG panel per labelled pair of a built split (`<sequence>_<pair>.png`; none where `out`
    is None), and with `video` one MP4 of them in order at the first sequence's recording rate /
    `every`. With `pre_annotations` the pairs are instead those without labels (a labelled
    pair's truth is not to be replaced by a prediction), and each prediction is written there
    too; `NothingToPredict` when the split has none."""
    ds = make_dataset(cfg, root, split, train=False, working_resolution=False)
    if pre_annotations is not None:
        ds.items = [(s, i) for s, seq in enumerate(ds.sequences) for i in range(seq.num_pairs)
                    if not seq.pairs["has_label"][i]]
        if not ds.items:
            raise NothingToPredict(f"{Path(root) / split}: every pair has labels already; nothing "
                                   "to pre-annotate (pre-annotations are for unlabelled pairs)")
    picked = chosen(len(ds), limit, every)
    dev = torch.device(device)
    fps = (rate_hz(ds.sequences[0].pairs) or FALLBACK_RATE_HZ) / max(1, every)
    names = _sequence_names(root, split)

    def pairs() -> Iterator[_Pair]:
        for idx in picked:
            sample = ds[idx]
            s, i = ds.items[idx]
            seq = ds.sequences[s]
            label = sample["label"].numpy().astype(np.uint8) if seq.pairs["has_label"][i] else None
            yield _Pair(f"{seq.path.stem}_{i:05d}", f"RGB {i}", sample["image"], sample["events"],
                        label, names.get(seq.path.name, seq.path.stem),
                        int(seq.pairs["frame_id"][i]))

    return _write(net, pairs(), len(picked), None if out is None else Path(out), dev, video, fps,
                  "predict", pre_annotations, cfg["data"].get("short_side"))


def predict_session_to_folder(net: Any, cfg: dict, session: SessionPairs, out: str | Path | None,
                              device: str | torch.device = "cpu", limit: int | None = None,
                              every: int = 1, video: str | Path | None = None,
                              pre_annotations: PreAnnotationWriter | None = None) -> list[Path]:
    """One PNG panel per pair of a session (`<session>_<pair>.png`; ground truth where the
    simulator recorded it; none where `out` is None), and with `video` one MP4 at the recording
    rate / `every`. With `pre_annotations` the pairs are those without ground truth (a real
    recording: all), each prediction written there too under the session's name and the pair's
    frame id, which `rpea build` of the session gives its sequence and pair as well."""
    d = cfg["data"]
    has_label = session.sequence.pairs["has_label"]
    candidates = list(range(len(session)))
    if pre_annotations is not None:
        candidates = [i for i in candidates if not has_label[i]]
        if not candidates:
            raise NothingToPredict(f"{session.session}: every pair has ground truth (a simulated "
                                   "session); nothing to pre-annotate")
    picked = [candidates[k] for k in chosen(len(candidates), limit, every)]
    labelled = bool(has_label[candidates].any())  # any panel has truth: all get the column
    dev = torch.device(device)

    def pairs() -> Iterator[_Pair]:
        for p in session.pairs(d["representation"], int(d["bins"]), picked):
            label = p.label
            if labelled and label is None:  # keep every panel (and video frame) one size
                label = np.full(p.image.shape[:2], 255, np.uint8)
            yield _Pair(f"{session.name}_{p.index:05d}", f"RGB {p.index}",
                        torch.from_numpy(np.ascontiguousarray(p.image.transpose(2, 0, 1))),
                        torch.from_numpy(np.ascontiguousarray(p.events)), label,
                        session.name, p.frame_id)

    return _write(net, pairs(), len(picked), None if out is None else Path(out), dev, video,
                  session.rate_hz / max(1, every), f"predict {session.name}", pre_annotations,
                  cfg["data"].get("short_side"))
