"""The CACD network: two MiT encoders, attention fusion, SegFormer all-MLP decoder, and the
training-only HFCA/JBCD heads (paper section 4).

`CACDNet.forward(image, events)` runs what inference needs (encoders + fusion + decoder) and
returns logits at 1/4 resolution. `CACDNet.aux(feats_img, feats_evt)` runs the training-only
heads; `forward(..., with_aux=True)` returns both. With HFCA: the projection heads P_img/P_evt
(eq. 1; also the common space of the JBCD boundary loss). With JBCD: class-channel content heads
(eq. 7), on the projected maps with HFCA, else on the stage features; "JBCD without HFCA" has no
projection at all: its boundary loss compares the stage features directly (`direct_features`),
as the paper's Table 2 row "transfers knowledge directly".
With `modalities="image"` or `"event"` the network is a plain single-stream SegFormer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.mit import MixVisionTransformer, get_spec

# ImageNet statistics: the RGB encoder starts from ImageNet-pretrained MiT weights
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class NetConfig:
    """What defines the network (saved with every checkpoint)."""

    backbone: str = "mit_b0"
    num_classes: int = 19
    event_channels: int = 3
    modalities: str = "both"  # "both" | "image" | "event"
    hfca: bool = True  # projection heads P_img/P_evt (eq. 1)
    jbcd: bool = True  # class-channel content heads (eq. 7)
    proj_dim: int = 128
    decoder_dim: int | None = None  # None: SegFormer's choice for the backbone (256 / 768)
    drop_path_rate: float = 0.1
    fusion_pool: bool = True  # fusion attention keys/values pooled by the stage's sr ratio


class MLP(nn.Module):
    """SegFormer decoder's per-stage linear embedding (NVlabs name: `proj`)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.proj(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)


class ConvBNReLU(nn.Module):
    """1x1 conv (no bias) + BN + ReLU: mmseg's ConvModule, names `conv` and `bn`."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class SegFormerHead(nn.Module):
    """All-MLP decoder: per-stage linear to `dim`, upsample to 1/4, concat, fuse, classify."""

    def __init__(self, in_dims: list[int], dim: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        for i, c in enumerate(in_dims):
            setattr(self, f"linear_c{i + 1}", MLP(c, dim))
        self.linear_fuse = ConvBNReLU(4 * dim, dim)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        ups = []
        for i, f in enumerate(feats):
            up = self.get_submodule(f"linear_c{i + 1}")(f)
            ups.append(F.interpolate(up, size=size, mode="bilinear", align_corners=False) if i else up)
        x = self.linear_fuse(torch.cat(ups[::-1], 1))
        return self.linear_pred(self.dropout(x))


class FusionBlock(nn.Module):
    """Concatenate RGB and event tokens channel-wise (2C), mix them with multi-head attention
    (keys/values average-pooled by the stage's reduction ratio so cost stays linear in pixels),
    then project back to C channels for the decoder."""

    def __init__(self, dim: int, heads: int, pool: int) -> None:
        super().__init__()
        d2 = 2 * dim
        self.norm = nn.LayerNorm(d2)
        self.pool = pool
        if pool > 1:
            self.kv_norm = nn.LayerNorm(d2)
        self.attn = nn.MultiheadAttention(d2, heads, batch_first=True)
        self.out = nn.Linear(d2, dim)

    def forward(self, f_img: torch.Tensor, f_evt: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f_img.shape
        x = torch.cat([f_img, f_evt], 1)
        tokens = x.flatten(2).transpose(1, 2)
        q = self.norm(tokens)
        if self.pool > 1:
            kv = F.avg_pool2d(x, self.pool, self.pool, ceil_mode=True).flatten(2).transpose(1, 2)
            kv = self.kv_norm(kv)
        else:
            kv = q
        tokens = tokens + self.attn(q, kv, kv, need_weights=False)[0]
        return self.out(tokens).transpose(1, 2).reshape(b, c, h, w)


class MultiScaleProjection(nn.Module):
    """Projection layer P into the common space, at the 1/4 grid: a linear map of the four
    stage features (each upsampled to 1/4), computed per stage then summed (same function,
    less memory)."""

    def __init__(self, in_dims: list[int], dim: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, 1, bias=(i == 0))
                                  for i, c in enumerate(in_dims))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        out = self.proj[0](feats[0])
        for p, f in zip(self.proj[1:], feats[1:], strict=True):
            out = out + F.interpolate(p(f), size=size, mode="bilinear", align_corners=False)
        return out


def direct_features(feats: list[torch.Tensor]) -> torch.Tensor:
    """The four stage features bilinearly upsampled to the first stage's (1/4) grid and
    concatenated: (B, sum of stage widths, H/4, W/4). What P_img/P_evt map linearly; "JBCD
    without HFCA" aligns these maps themselves (no learned parameters)."""
    size = feats[0].shape[2:]
    return torch.cat([feats[0]] + [F.interpolate(f, size=size, mode="bilinear",
                                                 align_corners=False) for f in feats[1:]], 1)


class CACDNet(nn.Module):
    """Two-stream CACD (or a single-stream SegFormer, see module doc)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        if cfg.modalities not in ("both", "image", "event"):
            raise ValueError(f"modalities must be both|image|event, got {cfg.modalities!r}")
        self.cfg = cfg
        spec = get_spec(cfg.backbone)
        dims = list(spec.embed_dims)
        if cfg.modalities in ("both", "image"):
            self.rgb_encoder = MixVisionTransformer(spec, 3, cfg.drop_path_rate)
        if cfg.modalities in ("both", "event"):
            self.event_encoder = MixVisionTransformer(spec, cfg.event_channels,
                                                      cfg.drop_path_rate)
        two = cfg.modalities == "both"
        if two:
            self.fusion = nn.ModuleList(
                FusionBlock(d, 2 * h, s if cfg.fusion_pool else 1)
                for d, h, s in zip(dims, spec.num_heads, spec.sr_ratios, strict=True))
        self.decode_head = SegFormerHead(dims, cfg.decoder_dim or spec.decoder_dim,
                                         cfg.num_classes)
        if two and cfg.hfca:
            self.proj_img = MultiScaleProjection(dims, cfg.proj_dim)
            self.proj_evt = MultiScaleProjection(dims, cfg.proj_dim)
        if two and cfg.jbcd:
            self.content_img: nn.Module
            self.content_evt: nn.Module
            if cfg.hfca:  # a 1x1 class read-out of the common space
                self.content_img = nn.Conv2d(cfg.proj_dim, cfg.num_classes, 1)
                self.content_evt = nn.Conv2d(cfg.proj_dim, cfg.num_classes, 1)
            else:  # no common space: a linear class read-out of the stage features
                self.content_img = MultiScaleProjection(dims, cfg.num_classes)
                self.content_evt = MultiScaleProjection(dims, cfg.num_classes)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    @property
    def has_aux(self) -> bool:
        """Whether the network has training-only heads (HFCA and/or JBCD on two streams)."""
        return hasattr(self, "proj_img") or hasattr(self, "content_img")

    def normalize_image(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float RGB (B, 3, H, W) -> ImageNet-normalised float."""
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        return (image - self.get_buffer("mean")) / self.get_buffer("std")

    def encode(self, image: torch.Tensor | None, events: torch.Tensor | None):
        """Stage features of each present modality."""
        f_img = f_evt = None
        if hasattr(self, "rgb_encoder"):
            if image is None:
                raise ValueError("this network takes images: give `image`")
            f_img = self.rgb_encoder(self.normalize_image(image))
        if hasattr(self, "event_encoder"):
            if events is None:
                raise ValueError("this network takes events: give `events`")
            f_evt = self.event_encoder(events.float())
        return f_img, f_evt

    def decode(self, f_img, f_evt) -> torch.Tensor:
        if f_img is not None and f_evt is not None:
            fused = [blk(a, b) for blk, a, b in zip(self.fusion, f_img, f_evt, strict=True)]
        else:
            fused = f_img if f_img is not None else f_evt
        return self.decode_head(fused)

    def aux(self, f_img: list[torch.Tensor], f_evt: list[torch.Tensor]) -> dict:
        """Training-only maps on the 1/4 grid. With HFCA: projected maps `proj_img`, `proj_evt`
        (B, D, H/4, W/4). With JBCD: class-channel content logits `content_img`, `content_evt`
        (B, K, H/4, W/4) and, without HFCA, the direct stage features `feat_img`, `feat_evt`
        that its boundary loss compares. `content_evt_probe` is the event content head on the
        detached event features: the teacher of an event -> image distillation, whose head still
        learns (a frozen random head would be no teacher) while the event branch does not."""
        out = {}
        if hasattr(self, "proj_img"):
            out["proj_img"], out["proj_evt"] = self.proj_img(f_img), self.proj_evt(f_evt)
        if hasattr(self, "content_img"):
            if "proj_img" in out:
                out["content_img"] = self.content_img(out["proj_img"])
                out["content_evt"] = self.content_evt(out["proj_evt"])
                out["content_evt_probe"] = self.content_evt(out["proj_evt"].detach())
            else:
                out["feat_img"], out["feat_evt"] = direct_features(f_img), direct_features(f_evt)
                out["content_img"] = self.content_img(f_img)
                out["content_evt"] = self.content_evt(f_evt)
                out["content_evt_probe"] = self.content_evt([f.detach() for f in f_evt])
        return out

    def forward(self, image: torch.Tensor | None = None, events: torch.Tensor | None = None,
                with_aux: bool = False):
        f_img, f_evt = self.encode(image, events)
        logits = self.decode(f_img, f_evt)
        if not with_aux:
            return logits
        aux = self.aux(f_img, f_evt) if self.has_aux else {}
        return logits, aux

    def inference_parameters(self) -> int:
        """Parameters used at inference (encoders + fusion + decoder)."""
        skip = ("proj_img.", "proj_evt.", "content_img.", "content_evt.")
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith(skip))
