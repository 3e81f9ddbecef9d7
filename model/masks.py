"""Instance-mask providers for HFCA (the paper uses GroundedSAM on EvLight-enhanced images).

- `masks`: the precomputed `masks` dataset of the RPEA file (`cacd masks DIR` writes it);
- `graph`: graph-based segmentation (Felzenszwalb, scikit-image) of the enhanced image; needs no
  download, the offline default;
- `sam`: Segment Anything automatic masks from a local checkpoint (`pip install
  segment-anything`; the checkpoint path is given by the user, nothing is downloaded);
- `auto`: `masks` where the sample has them, else `graph`.
Each provider maps an RGB uint8 image (H, W, 3) to an instance id map (H, W) int64, 0 = none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

MaskFn = Callable[[np.ndarray], np.ndarray]


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
    """The mask function for a provider name; None for `masks` (read from the file)."""
    if name == "masks":
        return None
    if name in ("graph", "auto"):
        return graph_masks
    if name == "sam":
        if not sam_checkpoint:
            raise ValueError("mask provider 'sam' needs data.sam_checkpoint=PATH (a local file)")
        return SamMasks(sam_checkpoint, sam_model_type)
    raise ValueError(f"unknown mask provider {name!r} (masks | graph | sam | auto)")


def write_masks(root: str | Path, provider: str = "graph", enhance: str = "clahe",
                splits: tuple[str, ...] | None = None, sam_checkpoint: str | None = None,
                sam_model_type: str = "vit_h", progress: bool = True) -> list[Path]:
    """Compute instance masks for every pair and store them as `masks` in each RPEA file.

    The files are rewritten through the RPEA writer (`dataset.rpea_format.replace_masks`: a
    temporary copy renamed into place) and the split's index.json sha256 sums updated.
    """
    from tqdm import tqdm

    from dataset.reader import RPEASequence, split_files
    from dataset.rpea_format import replace_masks, set_index_checksums
    from model.enhance import get_enhancer

    root = Path(root)
    fn = get_provider(provider, sam_checkpoint, sam_model_type)
    if fn is None:
        raise ValueError("provider 'masks' reads masks; choose graph or sam to compute them")
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
            digests[path.name] = replace_masks(path, ids)
            done.append(path)
        set_index_checksums(root / split, digests)
    return done
