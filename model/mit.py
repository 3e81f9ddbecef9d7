"""Mix Transformer (MiT-B0..B5) encoder with the NVlabs SegFormer parameter names.

The module tree mirrors NVlabs' `mix_transformer.py` (`patch_embed1`, `block1.0.attn.q`,
`block1.0.attn.kv`, `block1.0.attn.sr`, `norm1`, ...) so that the official ImageNet-pretrained
`mit_b*.pth` files load with `load_state_dict(strict=True)`; their classifier (`head.*`) is
dropped by `load_mit_weights` unless the encoder is built with `num_classes > 0`.
Weights are only ever read from a local path (no downloads).
"""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MiTSpec:
    """Architecture hyper-parameters of one MiT variant (SegFormer paper, Table 6)."""

    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    mlp_ratios: tuple[int, int, int, int] = (4, 4, 4, 4)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    decoder_dim: int = 768


MIT_SPECS: dict[str, MiTSpec] = {
    "mit_b0": MiTSpec((32, 64, 160, 256), (2, 2, 2, 2), decoder_dim=256),
    "mit_b1": MiTSpec((64, 128, 320, 512), (2, 2, 2, 2), decoder_dim=256),
    "mit_b2": MiTSpec((64, 128, 320, 512), (3, 4, 6, 3)),
    "mit_b3": MiTSpec((64, 128, 320, 512), (3, 4, 18, 3)),
    "mit_b4": MiTSpec((64, 128, 320, 512), (3, 8, 27, 3)),
    "mit_b5": MiTSpec((64, 128, 320, 512), (3, 6, 40, 3)),
}


def get_spec(name: str) -> MiTSpec:
    """Spec by name; accepts `mit_b5`, `mit-b5`, `b5`."""
    key = name.lower().replace("-", "_")
    if not key.startswith("mit_"):
        key = "mit_" + key
    if key not in MIT_SPECS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(MIT_SPECS)}")
    return MIT_SPECS[key]


class DropPath(nn.Module):
    """Stochastic depth on the residual branch, per sample."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with overlap (patch 7/stride 4, then 3/2), then LayerNorm."""

    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Attention(nn.Module):
    """Efficient self-attention: keys/values come from a sequence shrunk by `sr_ratio`."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        src = x
        if self.sr_ratio > 1:
            src = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            src = self.norm(src)
        kv = self.kv(src).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    """3x3 depth-wise convolution inside Mix-FFN (gives positional information)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """Mix-FFN: fc1 -> DWConv -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)); x + mlp(norm2(x))."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: int, sr_ratio: int, drop_path: float, eps: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, sr_ratio, eps)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), h, w))
        return x + self.drop_path(self.mlp(self.norm2(x), h, w))


class MixVisionTransformer(nn.Module):
    """Hierarchical MiT encoder; `forward` returns the four stage maps (B, C_i, H/s_i, W/s_i).

    `eps` is the LayerNorm epsilon of blocks and stage norms (NVlabs: 1e-6; the patch-embedding
    norm keeps PyTorch's 1e-5 as in NVlabs). `num_classes > 0` adds the ImageNet `head`.
    """

    def __init__(
        self,
        spec: MiTSpec | str = "mit_b0",
        in_chans: int = 3,
        drop_path_rate: float = 0.1,
        eps: float = 1e-6,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        spec = get_spec(spec) if isinstance(spec, str) else spec
        self.spec = spec
        self.in_chans = in_chans
        self.embed_dims = list(spec.embed_dims)
        total = sum(spec.depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        start = 0
        for i in range(4):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            cin = in_chans if i == 0 else spec.embed_dims[i - 1]
            dim = spec.embed_dims[i]
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(patch, stride, cin, dim))
            blocks = [
                Block(dim, spec.num_heads[i], spec.mlp_ratios[i], spec.sr_ratios[i],
                      rates[start + j], eps)
                for j in range(spec.depths[i])
            ]
            setattr(self, f"block{i + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dim, eps=eps))
            start += spec.depths[i]
        if num_classes > 0:
            self.head = nn.Linear(spec.embed_dims[3], num_classes)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        b = x.shape[0]
        for i in range(1, 5):
            x, h, w = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"block{i}"):
                x = blk(x, h, w)
            x = getattr(self, f"norm{i}")(x)
            x = x.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


def _init_weights(m: nn.Module) -> None:
    """NVlabs initialisation: truncated normal linears, fan-out normal convolutions."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------- weight import

# Hugging Face key -> NVlabs key. Two spellings exist: the legacy one used by the `nvidia/mit-b*`
# files on the Hub (`encoder.block.0.1.attention.self.query`) and the transformers>=5 module tree
# (`stages.0.blocks.1.attention.q_proj`). Key/value are separate there and joined into `kv` here.
_HF_RULES: list[tuple[str, str]] = [
    (r"^(?:segformer\.)?encoder\.patch_embeddings\.(\d)\.proj\.", "patch_embed{s}.proj."),
    (r"^(?:segformer\.)?encoder\.patch_embeddings\.(\d)\.layer_norm\.", "patch_embed{s}.norm."),
    (r"^(?:segformer\.)?encoder\.layer_norm\.(\d)\.", "norm{s}."),
    (r"^(?:segformer\.)?encoder\.block\.(\d)\.(\d+)\.", "block{s}.{j}."),
    (r"^(?:segformer\.)?stages\.(\d)\.patch_embeddings\.proj\.", "patch_embed{s}.proj."),
    (r"^(?:segformer\.)?stages\.(\d)\.patch_embeddings\.layer_norm\.", "patch_embed{s}.norm."),
    (r"^(?:segformer\.)?stages\.(\d)\.layer_norm\.", "norm{s}."),
    (r"^(?:segformer\.)?stages\.(\d)\.blocks\.(\d+)\.", "block{s}.{j}."),
]
_HF_BLOCK_RULES: list[tuple[str, str]] = [
    ("layer_norm_1.", "norm1."),
    ("layernorm_before.", "norm1."),
    ("layer_norm_2.", "norm2."),
    ("layernorm_after.", "norm2."),
    ("attention.self.query.", "attn.q."),
    ("attention.q_proj.", "attn.q."),
    ("attention.self.key.", "attn.k."),
    ("attention.k_proj.", "attn.k."),
    ("attention.self.value.", "attn.v."),
    ("attention.v_proj.", "attn.v."),
    ("attention.output.dense.", "attn.proj."),
    ("attention.o_proj.", "attn.proj."),
    ("attention.self.sr.", "attn.sr."),
    ("attention.sequence_reduction.sequence_reduction.", "attn.sr."),
    ("attention.self.layer_norm.", "attn.norm."),
    ("attention.sequence_reduction.layer_norm.", "attn.norm."),
    ("mlp.dense1.", "mlp.fc1."),
    ("mlp.fc1.", "mlp.fc1."),
    ("mlp.dense2.", "mlp.fc2."),
    ("mlp.fc2.", "mlp.fc2."),
    ("mlp.dwconv.dwconv.", "mlp.dwconv.dwconv."),
]


def convert_hf_state_dict(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face SegFormer/MiT encoder state dict to NVlabs names.

    Separate key/value projections become one `kv` (key rows first, as NVlabs splits `kv` into
    k = first half, v = second half). The ImageNet `classifier.*` becomes `head.*`; decode-head
    keys are ignored. Raises ValueError on any encoder key it cannot place.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in hf.items():
        if key.startswith(("classifier.", "segformer.classifier.")):
            out["head." + key.rsplit(".", 1)[1]] = value
            continue
        if key.startswith("decode_head."):
            continue
        for pattern, template in _HF_RULES:
            m = re.match(pattern, key)
            if m:
                s = int(m.group(1)) + 1
                j = m.group(2) if m.lastindex and m.lastindex > 1 else ""
                new = template.format(s=s, j=j) + key[m.end():]
                break
        else:
            raise ValueError(f"unrecognised Hugging Face SegFormer key {key!r}")
        if new.startswith("block"):
            head, rest = new.split(".", 2)[:2], new.split(".", 2)[2]
            for old, rep in _HF_BLOCK_RULES:
                if rest.startswith(old):
                    rest = rep + rest[len(old):]
                    break
            else:
                raise ValueError(f"unrecognised Hugging Face SegFormer block key {key!r}")
            new = ".".join(head) + "." + rest
        out[new] = value
    for key in [k for k in out if ".attn.k." in k]:
        v_key = key.replace(".attn.k.", ".attn.v.")
        out[key.replace(".attn.k.", ".attn.kv.")] = torch.cat([out.pop(key), out.pop(v_key)], 0)
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local `.pth`/`.pt` (weights_only) or `.safetensors` file, or an HF folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
        if not files:
            raise FileNotFoundError(f"{path}: no *.safetensors or pytorch_model*.bin in folder")
        sd: dict[str, torch.Tensor] = {}
        for f in files:
            sd.update(read_state_dict(f))
        return sd
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weight file not found (weights are never downloaded)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path}: holds objects other than tensors and plain containers, which are not "
            "unpickled here (weights_only); in a session you trust, load the file with full "
            "unpickling and torch.save its ['state_dict'] alone, then give that file "
            f"({str(err).splitlines()[0]})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return obj


def adapt_input_channels(sd: dict[str, torch.Tensor], in_chans: int) -> dict[str, torch.Tensor]:
    """`sd` with the first convolution fitted to `in_chans` inputs: RGB filters averaged over
    channels and repeated (scaled to keep the response to a uniform input), the usual way to
    start a non-RGB encoder from RGB weights."""
    w = sd.get("patch_embed1.proj.weight")
    if w is not None and w.ndim == 4 and w.shape[1] != in_chans:
        sd = dict(sd)
        sd["patch_embed1.proj.weight"] = w.mean(1, keepdim=True).repeat(1, in_chans, 1, 1) * 3.0 / in_chans
    return sd


def load_mit_weights(encoder: MixVisionTransformer, path: str | Path) -> None:
    """Load NVlabs (`mit_b*.pth`) or Hugging Face (`nvidia/mit-b*` folder) weights, strictly.

    Every encoder parameter must be present and every file key used, except the ImageNet
    classifier when the encoder has no `head`. A first-stage input width mismatch (event encoder
    with N != 3 channels) is resolved by `adapt_input_channels`. A SegFormer segmentation
    checkpoint (NVlabs or mmseg `backbone.*` keys) gives its backbone, strictly too; its decoder
    needs the whole network (`model.pretrained.load_pretrained`).
    """
    sd = read_state_dict(path)
    if any(k.startswith("backbone.") for k in sd):
        from model.pretrained import backbone_state

        sd = backbone_state(sd)[0]
    elif any(k.startswith(("encoder.", "segformer.", "stages.")) for k in sd):
        sd = convert_hf_state_dict(sd)
    if not hasattr(encoder, "head"):
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
    sd = adapt_input_channels(sd, encoder.in_chans)
    try:
        encoder.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: does not match {type(encoder).__name__}: {err}") from err
