"""Instance-mask providers for HFCA (the paper computes them: GroundedSAM on EvLight-enhanced
images), named `data.masks`:

- `graph` (default): graph-based segmentation (Felzenszwalb, scikit-image) of the enhanced
  image, computed per sample; needs no download. What a user without ground truth gets.
- `sam`: Segment Anything automatic masks of the enhanced image from a local checkpoint (`pip
  install segment-anything`; the checkpoint path is given by the user, nothing is downloaded).
- `precomputed`: masks computed earlier by `cacd masks DIR` (graph or sam) and stored in the
  RPEA files; the `masks` dataset's `source` attribute says which.
- `oracle`: the ground-truth instance masks the builder (simulated sessions) and `cacd synth`
  store. A real recording has none; results trained on them are labelled "oracle masks".
`precomputed` and `oracle` read the same `masks` dataset and tell its kinds apart by that
attribute (`dataset.rpea_format.mask_source_of`), so neither can pass for the other.
Each computing provider maps an RGB uint8 image (H, W, 3) to an instance id map (H, W) int64,
0 = none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

MaskFn = Callable[[np.ndarray], np.ndarray]

#: `data.masks` values: computed from the images during training / read from the RPEA files
COMPUTED = ("graph", "sam")
STORED = ("precomputed", "oracle")
MASK_CHOICES = (*COMPUTED, *STORED)


def graph_masks(image: np.ndarray, scale: float = 100.0, sigma: float = 0.8,
                min_size: int | None = None) -> np.ndarray:
    """Felzenszwalb regions as instance ids 1..K (every pixel belongs to one region)."""
    from skimage.segmentation import felzenszwalb

    h, w = image.shape[:2]
    if min_size is None:
        min_size = max(16, h * w // 400)
    seg = felzenszwalb(image, scale=scale, sigma=sigma, min_size=min_size)
    return seg.astype(np.int64) + 1


class SamMasks:
    """Segment Anything automatic mask generation from a local checkpoint."""

    def __init__(self, checkpoint: str, model_type: str = "vit_h", device: str = "cpu") -> None:
        try:
            from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
        except ImportError as err:
            raise RuntimeError(
                "mask provider 'sam' needs the optional package: pip install segment-anything"
            ) from err
        from pathlib import Path

        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"{checkpoint}: SAM checkpoint not found (never downloaded)")
        sam = sam_model_registry[model_type](checkpoint=checkpoint).to(device)
        self.generator = SamAutomaticMaskGenerator(sam)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        ids = np.zeros(image.shape[:2], np.int64)
        masks = sorted(self.generator.generate(image), key=lambda m: -m["area"])
        for k, m in enumerate(masks, start=1):  # smaller masks drawn last stay visible
            ids[m["segmentation"]] = k
        return ids


def get_provider(name: str, sam_checkpoint: str | None = None,
                 sam_model_type: str = "vit_h") -> MaskFn | None:
    """The mask function of a computing provider; None for `precomputed` / `oracle` (read from
    the file)."""
    if name in STORED:
        return None
    if name == "graph":
        return graph_masks
    if name == "sam":
        if not sam_checkpoint:
            raise ValueError("mask provider 'sam' needs data.sam_checkpoint=PATH (a local file)")
        return SamMasks(sam_checkpoint, sam_model_type)
    raise ValueError(f"unknown mask provider {name!r} ({' | '.join(MASK_CHOICES)})")


def stored_mask_sources(root: str | Path, split: str) -> dict[Path, str | None]:
    """Each sequence file of the split -> the source of its stored masks (MASK_SOURCES), ""
    when not recorded, None when the file has no masks."""
    from dataset.reader import open_sequence_file, split_files
    from dataset.rpea_format import mask_source_of

    out: dict[Path, str | None] = {}
    for path in split_files(root, split):
        with open_sequence_file(path) as f:
            out[path] = mask_source_of(f)
    return out


def check_stored_masks(root: str | Path, split: str, kind: str) -> tuple[str, ...]:
    """The sources of the split's stored masks when they are what `data.masks=kind` asks for
    (`oracle`: ground truth; `precomputed`: computed by `cacd masks`), else ValueError naming the
    first file that is not and what to do. Checked before training so that no oracle mask can
    pass for a computed one, or the reverse."""
    from dataset.rpea_format import MASK_SOURCES, ORACLE_MASKS

    if kind not in STORED:
        raise ValueError(f"{kind!r} is not a stored mask kind ({' | '.join(STORED)})")
    found = set()
    for path, source in stored_mask_sources(root, split).items():
        if source is None:
            hint = ("rebuild it with masks (rpea build and cacd synth store the simulator's)"
                    if kind == "oracle" else "run `cacd masks DIR` first")
            raise ValueError(f"{path}: data.masks={kind} but the file has no masks; {hint}, "
                             "or use data.masks=graph")
        if source not in MASK_SOURCES:
            raise ValueError(f"{path}: its masks record no source (written before sources were "
                             "recorded), so oracle and computed masks cannot be told apart; run "
                             "`cacd masks DIR` and use data.masks=precomputed, rebuild the dataset "
                             "for oracle masks, or use data.masks=graph")
        if kind == "oracle" and source != ORACLE_MASKS:
            raise ValueError(f"{path}: data.masks=oracle but its masks were computed ({source}, "
                             "by `cacd masks`); use data.masks=precomputed, or rebuild the dataset "
                             "for the simulator's ground-truth masks")
        if kind == "precomputed" and source == ORACLE_MASKS:
            raise ValueError(f"{path}: data.masks=precomputed but its masks are the simulator's "
                             "ground truth (oracle); run `cacd masks DIR` to compute masks, or "
                             "say data.masks=oracle to train on ground truth")
        found.add(source)
    return tuple(sorted(found))


def mask_source_label(kind: str, sources: tuple[str, ...] = ()) -> str:
    """How tables name the masks HFCA trained on: "graph masks", "SAM masks", "precomputed
    graph masks", "oracle masks" (`sources`: what `check_stored_masks` found)."""
    names = {"graph": "graph", "sam": "SAM"}
    if kind in names:
        return f"{names[kind]} masks"
    if kind == "precomputed":
        made_by = "+".join(names.get(s, s) for s in sources)
        return f"precomputed {made_by} masks" if made_by else "precomputed masks"
    if kind == "oracle":
        return "oracle masks"
    raise ValueError(f"unknown mask provider {kind!r} ({' | '.join(MASK_CHOICES)})")


def write_masks(root: str | Path, provider: str = "graph", enhance: str = "clahe",
                splits: tuple[str, ...] | None = None, sam_checkpoint: str | None = None,
                sam_model_type: str = "vit_h", progress: bool = True) -> list[Path]:
    """Compute instance masks for every pair and store them as `masks` in each RPEA file, with
    `source` = the provider (so training reads them as `precomputed`, never as `oracle`; oracle
    masks already in the file are replaced).

    The files are rewritten through the RPEA writer (`dataset.rpea_format.replace_masks`: a
    temporary copy renamed into place) and the split's index.json sha256 sums updated.
    """
    from tqdm import tqdm

    from dataset.reader import RPEASequence, split_files
    from dataset.rpea_format import replace_masks, set_index_checksums
    from model.enhance import get_enhancer

    root = Path(root)
    if provider not in COMPUTED:
        raise ValueError(f"provider {provider!r} reads masks; choose graph or sam to compute them")
    fn = get_provider(provider, sam_checkpoint, sam_model_type)
    assert fn is not None
    enhancer = get_enhancer(enhance)
    splits = splits or tuple(sorted(p.name for p in root.iterdir() if (p / "index.json").is_file()
                                    or any(p.glob("*.h5"))))
    if not splits:
        raise FileNotFoundError(f"{root}: no RPEA dataset here (no <split>/index.json or "
                                "<split>/*.h5); give the folder rpea build or cacd synth wrote")
    done = []
    for split in splits:
        digests = {}
        for path in split_files(root, split):
            seq = RPEASequence(path)
            ids = np.zeros((seq.num_pairs, seq.height, seq.width), np.uint16)
            for i in tqdm(range(seq.num_pairs), desc=path.name,
                          disable=None if progress else True):
                img = seq.image(i)
                enhanced = enhancer(img, seq.representation(i))
                m = fn(enhanced)
                if m.max() > np.iinfo(np.uint16).max:
                    raise ValueError(f"{path}: pair {i} has more than 65535 regions")
                ids[i] = m
            seq.close()
            digests[path.name] = replace_masks(path, ids, source=provider,
                                               attrs={"enhance": enhance})
            done.append(path)
        set_index_checksums(root / split, digests)
    return done
