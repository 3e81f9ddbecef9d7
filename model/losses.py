"""CACD losses (paper eqs. 2-8). See docs/cacd.md for the exact reading of each equation.

All auxiliary losses work on the projection grid (1/4 of the input). Per-image quantities are
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


@dataclass
class LossWeights:
    """lambda_1..lambda_4 of eq. 8 (paper values) and the HFCA/JBCD constants."""

    cluster: float = 0.0005  # lambda_1, eq. 4
    align: float = 0.01  # lambda_2, eq. 5
    boundary: float = 0.001  # lambda_3, eq. 6
    content: float = 0.001  # lambda_4, eq. 7
    tau: float = 0.1  # eq. 5 temperature (not given in the paper)
    max_instances: int = 64  # largest instances kept per image (memory bound of eqs. 4-5)
    min_instance_px: int = 2  # instances smaller than this on the 1/4 grid are dropped


def resize_ids(ids: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an integer id map (B, H, W) to the feature grid."""
    return F.interpolate(ids[:, None].float(), size=size, mode="nearest")[:, 0].long()


def instance_features(feat_a: torch.Tensor, feat_b: torch.Tensor, ids: torch.Tensor,
                      max_instances: int = 64, min_px: int = 2
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
    """Eq. 6: L1 between gradient-weighted projected features, ||F_img*M - F_evt*M||_1,
    with per-pixel L2-normalised features (so the projection cannot shrink the loss away) and
    the mean over elements (nn.L1Loss convention). gim: (B, H, W) in [0, 1], any size."""
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
    pi, pe = aux["proj_img"], aux["proj_evt"]
    if use_hfca and "masks" in batch:
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
        if cl:
            lc, la = torch.stack(cl).mean(), torch.stack(al).mean()
            total = total + w.cluster * lc + w.align * la
            parts.update(cluster=float(lc.detach()), align=float(la.detach()))
    if use_jbcd:
        if "gim" in batch:
            lb = boundary_loss(pi, pe, batch["gim"])
            total = total + w.boundary * lb
            parts["boundary"] = float(lb.detach())
        if "exposure" in batch and "content_img" in aux:
            lct = content_loss(aux["content_img"], aux["content_evt"], batch["exposure"] > 0)
            if lct is not None:
                total = total + w.content * lct
                parts["content"] = float(lct.detach())
    parts["total"] = float(total.detach())
    return total, parts


def log_k(k: int) -> float:
    """Upper bound of `mutual_information` for K classes."""
    return math.log(k)
