"""CACD losses (paper eqs. 2-8). See docs/cacd.md for the exact reading of each equation.

HFCA (eqs. 2-5) aligns the two modalities: both sides learn. JBCD (eqs. 6-7) distils "from
event to image" (paper, section 4.2): by default (`LossWeights.distill = "event_to_image"`) the
event side is the teacher and is detached, so these two terms train only the image side;
`"mutual"` lets them pull on both sides (the behaviour before the teacher was detached).
All auxiliary losses work on the 1/4 grid. Per-image quantities are
averaged over the images of a batch that contribute (an image without instances or without an
extreme-exposure region contributes nothing to that term). Every function keeps every head in
the autograd graph even when a term is empty (a `0 * x.sum()` term), so DDP never sees unused
parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
#: `loss.distill_direction`: who learns from JBCD's two terms
DISTILL_DIRECTIONS = ("event_to_image", "mutual")


@dataclass
class LossWeights:
    """lambda_1..lambda_4 of eq. 8 (paper values) and the HFCA/JBCD constants."""

    cluster: float = 0.0005  # lambda_1, eq. 4
    align: float = 0.01  # lambda_2, eq. 5
    boundary: float = 0.001  # lambda_3, eq. 6
    content: float = 0.001  # lambda_4, eq. 7
    tau: float = 0.1  # eq. 5 temperature (not given in the paper)
    # largest instances kept per image: eq. 4 sums over K(K-1) pairs, so with lambda_1 fixed
    # the cap sets HFCA's weight against CE (64 graph regions made it 11x CE; docs/cacd.md)
    max_instances: int = 16
    min_instance_px: int = 2  # instances smaller than this on the 1/4 grid are dropped
    distill: str = "event_to_image"  # JBCD direction, one of DISTILL_DIRECTIONS

    def __post_init__(self) -> None:
        if self.distill not in DISTILL_DIRECTIONS:
            raise ValueError(f"distill must be {' | '.join(DISTILL_DIRECTIONS)}, "
                             f"got {self.distill!r}")

    def teacher(self, x: torch.Tensor) -> torch.Tensor:
        """The event-side (teacher) tensor of a JBCD term: detached when distilling event ->
        image, so the term's gradient reaches only the image side."""
        return x.detach() if self.distill == "event_to_image" else x


def resize_ids(ids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an integer id map (B, H, W) to the feature grid."""
    return F.interpolate(ids[:, None].float(), size=size, mode="nearest")[:, 0].long()


def instance_features(feat_a: torch.Tensor, feat_b: torch.Tensor, ids: torch.Tensor,
                      max_instances: int = LossWeights.max_instances,
                      min_px: int = LossWeights.min_instance_px
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Eqs. 2-3: mask-average the features of each instance, then L2-normalise.

    feat_a, feat_b: (D, h, w) maps of the two modalities; ids: (h, w) instance ids, 0 = none.
    Returns (K, D) and (K, D) with row k of both belonging to the same instance (largest first).
    """
    flat = ids.flatten()
    uniq, inverse, counts = torch.unique(flat, return_inverse=True, return_counts=True)
    keep = (uniq != 0) & (counts >= min_px)
    order = torch.argsort(counts.masked_fill(~keep, -1), descending=True)
    order = order[: min(int(keep.sum()), max_instances)]
    if order.numel() == 0:
        return None
    slot = torch.full((uniq.numel(),), -1, dtype=torch.long, device=ids.device)
    slot[order] = torch.arange(order.numel(), device=ids.device)
    pix = slot[inverse]
    valid = pix >= 0
    k = order.numel()
    out = []
    for feat in (feat_a, feat_b):
        f = feat.flatten(1).t()[valid]  # (N, D)
        summed = torch.zeros(k, f.shape[1], dtype=f.dtype, device=f.device)
        summed.index_add_(0, pix[valid], f)
        mean = summed / counts[order].to(f.dtype)[:, None]
        out.append(F.normalize(mean.float(), dim=1))
    return out[0], out[1]


def intra_cluster_loss(f_evt: torch.Tensor, f_img: torch.Tensor) -> torch.Tensor:
    """Eq. 4: sum over ordered pairs i != j of exp(F_i . F_j), both domains."""
    k = f_evt.shape[0]
    off = ~torch.eye(k, dtype=torch.bool, device=f_evt.device)
    return (torch.exp(f_evt @ f_evt.t())[off].sum() + torch.exp(f_img @ f_img.t())[off].sum())


def inter_align_loss(f_evt: torch.Tensor, f_img: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 5: InfoNCE, event instance i against all image instances j, summed over i."""
    logits = f_evt @ f_img.t() / tau
    target = torch.arange(f_evt.shape[0], device=f_evt.device)
    return F.cross_entropy(logits, target, reduction="sum")


def boundary_loss(proj_img: torch.Tensor, proj_evt: torch.Tensor,
                  gim: torch.Tensor) -> torch.Tensor:
    """Eq. 6: L1 between gradient-weighted features, ||F_img*M - F_evt*M||_1, with per-pixel
    L2-normalised features (so a projection cannot shrink the loss away, and stage features of
    different scale compare) and the mean over elements (nn.L1Loss convention).
    proj_*: (B, D, h, w) projected maps or direct stage features; gim: (B, H, W) in [0, 1],
    any size. Detaching `proj_evt` (the teacher) is the caller's choice (`jbcd_losses`)."""
    m = F.interpolate(gim[:, None].float(), size=proj_img.shape[2:], mode="area")
    a = F.normalize(proj_img.float(), dim=1) * m
    b = F.normalize(proj_evt.float(), dim=1) * m
    return F.l1_loss(a, b)


def mutual_information(p_a: torch.Tensor, p_b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """I(A; B) of the IIC joint: P = mean_n p_a(n) p_b(n)^T (K x K), symmetrised.

    p_a, p_b: (N, K) class distributions of the same N pixels. Returns a scalar in
    [0, log K]; equal to the entropy of the marginal for identical one-hot predictions.
    """
    joint = p_a.t() @ p_b / max(p_a.shape[0], 1)
    joint = ((joint + joint.t()) / 2).clamp_min(eps)
    joint = joint / joint.sum()
    pa = joint.sum(1, keepdim=True)
    pb = joint.sum(0, keepdim=True)
    return (joint * (joint.log() - pa.log() - pb.log())).sum()


def content_loss(content_img: torch.Tensor, content_evt: torch.Tensor,
                 region: torch.Tensor) -> torch.Tensor | None:
    """Eq. 7: minus the mutual information between the event and image class distributions
    (softmax over the class channels) over the extreme-exposure pixels of each image.

    content_*: (B, K, h, w) logits; region: (B, H, W) bool (V < alpha or V > beta), any size.
    Returns the mean over images that have such pixels, or None if none has.
    """
    r = F.interpolate(region[:, None].float(), size=content_img.shape[2:], mode="area")[:, 0]
    terms = []
    for b in range(content_img.shape[0]):
        sel = r[b] > 0.5
        if int(sel.sum()) < 2:
            continue
        pi = content_img[b].float().softmax(0)[:, sel].t()
        pe = content_evt[b].float().softmax(0)[:, sel].t()
        terms.append(-mutual_information(pe, pi))
    return torch.stack(terms).mean() if terms else None


def hfca_losses(aux: dict, batch: dict, w: LossWeights) -> dict[str, torch.Tensor]:
    """Eqs. 2-5 on the projected maps and the batch's instance masks: `cluster` and `align`
    (each the mean over the images with at least two instances); {} when there are none.
    Alignment, not distillation: both modalities learn from these terms."""
    if "masks" not in batch or "proj_img" not in aux:
        return {}
    pi, pe = aux["proj_img"], aux["proj_evt"]
    ids = resize_ids(batch["masks"], pi.shape[2:])
    cl, al = [], []
    for b in range(pi.shape[0]):
        got = instance_features(pe[b].float(), pi[b].float(), ids[b], w.max_instances,
                                w.min_instance_px)
        if got is None or got[0].shape[0] < 2:
            continue
        f_evt, f_img = got
        cl.append(intra_cluster_loss(f_evt, f_img))
        al.append(inter_align_loss(f_evt, f_img, w.tau))
    if not cl:
        return {}
    return {"cluster": torch.stack(cl).mean(), "align": torch.stack(al).mean()}


def jbcd_losses(aux: dict, batch: dict, w: LossWeights) -> dict[str, torch.Tensor]:
    """Eqs. 6-7: `boundary` (needs `gim` in the batch) and `content` (needs `exposure` with
    extreme pixels). The boundary term compares the projected maps F = P(f) where the network
    has HFCA's projections, else the stage features f themselves (`feat_img`/`feat_evt`: "JBCD
    without HFCA" aligns the modalities directly). The event side is the teacher
    (`w.teacher`)."""
    out: dict[str, torch.Tensor] = {}
    key = "proj" if "proj_img" in aux else "feat"
    if "gim" in batch and f"{key}_img" in aux:
        out["boundary"] = boundary_loss(aux[f"{key}_img"], w.teacher(aux[f"{key}_evt"]),
                                        batch["gim"])
    if "exposure" in batch and "content_img" in aux:
        # the teacher's class channels: its head on the detached event features (the head learns,
        # the event branch does not), or the plain head when both sides learn
        teacher = (aux["content_evt_probe"] if w.distill == "event_to_image" and
                   "content_evt_probe" in aux else aux["content_evt"])
        lct = content_loss(aux["content_img"], teacher, batch["exposure"] > 0)
        if lct is not None:
            out["content"] = lct
    return out


def total_loss(logits: torch.Tensor, label: torch.Tensor, aux: dict, batch: dict,
               w: LossWeights, use_hfca: bool, use_jbcd: bool) -> tuple[torch.Tensor, dict]:
    """Eq. 8. Returns the total and a dict of float parts for logging."""
    up = F.interpolate(logits.float(), size=label.shape[1:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(up, label, ignore_index=IGNORE_INDEX)
    total = ce
    parts = {"ce": float(ce.detach())}
    if not aux:
        return total, parts
    zero = sum(v.float().sum() for v in aux.values()) * 0.0  # keep all heads in the graph
    total = total + zero
    weight = {"cluster": w.cluster, "align": w.align, "boundary": w.boundary,
              "content": w.content}
    terms = {**(hfca_losses(aux, batch, w) if use_hfca else {}),
             **(jbcd_losses(aux, batch, w) if use_jbcd else {})}
    for name, value in terms.items():
        total = total + weight[name] * value
        parts[name] = float(value.detach())
    parts["total"] = float(total.detach())
    return total, parts


def log_k(k: int) -> float:
    """Upper bound of `mutual_information` for K classes."""
    return math.log(k)
