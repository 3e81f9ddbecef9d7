"""The CACD network: two MiT encoders, attention fusion, SegFormer all-MLP decoder, and the
training-only HFCA/JBCD heads (paper section 4).

`CACDNet.forward(image, events)` runs what inference needs (encoders + fusion + decoder) and
returns logits at 1/4 resolution. `CACDNet.aux(feats_img, feats_evt)` runs the training-only
projection heads P_img/P_evt (HFCA, also the common space of the JBCD boundary loss) and the
class-channel content heads (JBCD); `forward(..., with_aux=True)` returns both.
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
    hfca: bool = True
    jbcd: bool = True
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
        if two and (cfg.hfca or cfg.jbcd):
            self.proj_img = MultiScaleProjection(dims, cfg.proj_dim)
            self.proj_evt = MultiScaleProjection(dims, cfg.proj_dim)
        if two and cfg.jbcd:
            self.content_img = nn.Conv2d(cfg.proj_dim, cfg.num_classes, 1)
            self.content_evt = nn.Conv2d(cfg.proj_dim, cfg.num_classes, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    @property
    def has_aux(self) -> bool:
        return hasattr(self, "proj_img")

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
        """Training-only heads: projected maps F_img, F_evt (B, D, H/4, W/4) and, with JBCD,
        class-channel content logits of each modality."""
        out = {"proj_img": self.proj_img(f_img), "proj_evt": self.proj_evt(f_evt)}
        if hasattr(self, "content_img"):
            out["content_img"] = self.content_img(out["proj_img"])
            out["content_evt"] = self.content_evt(out["proj_evt"])
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
