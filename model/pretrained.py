"""SegFormer segmentation checkpoints (NVlabs, mmsegmentation, transformers) as a start for CACD.

Why: a SegFormer trained on Cityscapes already segments our 19 classes; starting from it (encoder
and decoder) instead of ImageNet encoders should need far fewer steps. NVlabs and mmseg publish
`{"meta": ..., "state_dict": {...}}` .pth files (read by `model.mit.read_state_dict`, weights
only) with `backbone.*` and `decode_head.*` keys, named in two schemes; transformers has a third:

- **NVlabs** (github.com/NVlabs/SegFormer): the backbone uses our MiT names
  (`backbone.block1.0.attn.q.weight`); the head is `linear_c{1..4}.proj`, `linear_fuse.conv`,
  `linear_fuse.bn`, `linear_pred`: exactly our `SegFormerHead`. Its `decode_head.conv_seg.*`
  (the mmseg base class's classifier, never used by NVlabs' forward) is left unused.
- **mmsegmentation** (`mmseg/models/backbones/mit.py`, `decode_heads/segformer_head.py`, and
  `tools/model_converters/mit2mmseg.py` for the renaming): backbone `layers.{i}.0` patch
  embedding (`projection`, `norm`), `layers.{i}.1.{j}` blocks (`attn.attn.in_proj_*` = q rows
  then kv rows, `attn.attn.out_proj`, `attn.sr`, `attn.norm`, `ffn.layers.{0,1,4}` = fc1 as 1x1
  conv, depth-wise conv, fc2 as 1x1 conv), `layers.{i}.2` stage norm. Head: `convs.{i}` (1x1 conv
  + BN + ReLU per stage), `fusion_conv` (conv + BN + ReLU), `conv_seg`. Mapped onto ours: each
  stage's conv with its BN folded in (inference statistics) becomes `linear_c{i+1}.proj`; the
  fusion conv's input blocks are reversed (mmseg concatenates stages 1..4, NVlabs 4..1);
  `conv_seg` becomes `linear_pred`. mmseg's per-stage ReLU has no counterpart in the NVlabs head,
  so an mmseg decoder starts fine-tuning close to, not at, its trained function (NVlabs and the
  encoders of both load exactly).
- **transformers** (`SegformerForSemanticSegmentation`, e.g. a `nvidia/segformer-b0-finetuned-
  cityscapes-1024-1024` folder): encoder through `convert_hf_state_dict`, head
  `linear_c.{i}`/`linear_projections.{i}`, `linear_fuse`, `batch_norm`, `classifier` (NVlabs'
  order, so exact).

Tensors whose shapes differ from ours (e.g. the 150-class ADE20K classifier against our 19
classes) are skipped and reported, not an error; a file of which nothing fits is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from model.mit import MixVisionTransformer, adapt_input_channels, convert_hf_state_dict, read_state_dict

#: BatchNorm epsilon of mmseg's SegformerHead (mmcv's SyncBN/BN default), for folding it.
MMSEG_BN_EPS = 1e-5
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")


class PretrainedError(ValueError):
    """A weights file that cannot start this network (the message names the file)."""


@dataclass
class LoadReport:
    """What a segmentation checkpoint gave the network (our parameter names)."""

    path: str
    scheme: str  # "nvlabs" | "mmseg"
    loaded: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # ours, not in the file
    unused: list[str] = field(default_factory=list)  # the file's, not placed
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the log, e.g. `pretrained ...: 189 loaded, 2 skipped (shape), 0 missing`."""
        line = (f"pretrained {self.path} ({self.scheme} names): {len(self.loaded)} tensors loaded, "
                f"{len(self.mismatched)} skipped (shape mismatch), {len(self.missing)} missing, "
                f"{len(self.unused)} unused")
        if self.mismatched:
            shown = ", ".join(f"{k} {list(ours)} vs file {list(theirs)}"
                              for k, ours, theirs in self.mismatched[:3])
            line += f"; skipped: {shown}" + (" ..." if len(self.mismatched) > 3 else "")
        return "\n".join([line, *(f"  note: {n}" for n in self.notes)])


_HF_HEAD = ("decode_head.linear_c.", "decode_head.linear_projections.")


def is_segmentation_state(sd: dict[str, torch.Tensor]) -> bool:
    """A segmentation model's state dict (`backbone.*` / `decode_head.*`), not a bare encoder."""
    return any(k.startswith(("backbone.", "decode_head.")) for k in sd)


def scheme_of(sd: dict[str, torch.Tensor]) -> str:
    """"nvlabs", "mmseg" or "hf" (transformers' SegformerForSemanticSegmentation), from the
    key names."""
    if any(k.startswith(("segformer.", *_HF_HEAD)) for k in sd):
        return "hf"
    if any(k.startswith(("backbone.layers.", "decode_head.convs.", "decode_head.fusion_conv."))
           for k in sd):
        return "mmseg"
    return "nvlabs"


# ------------------------------------------------------------------------------------ backbone

_MMSEG_BLOCK: list[tuple[str, str]] = [
    ("norm1.", "norm1."), ("norm2.", "norm2."),
    ("attn.attn.out_proj.", "attn.proj."), ("attn.sr.", "attn.sr."), ("attn.norm.", "attn.norm."),
    ("ffn.layers.0.", "mlp.fc1."), ("ffn.layers.1.", "mlp.dwconv.dwconv."), ("ffn.layers.4.", "mlp.fc2."),
]


def mmseg_backbone_to_nvlabs(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """mmseg MiT keys (without `backbone.`) -> NVlabs names; returns (renamed, unplaced keys).
    The joint q/k/v projection is split into `q` and `kv`; 1x1-conv MLP weights become linear."""
    out: dict[str, torch.Tensor] = {}
    unplaced = []
    for key, value in sd.items():
        m = re.match(r"^layers\.(\d)\.(\d)\.(.*)$", key)
        if not m:
            unplaced.append(key)
            continue
        s, part, rest = int(m.group(1)) + 1, int(m.group(2)), m.group(3)
        if part == 0:  # patch embedding
            rest = rest.replace("projection.", "proj.", 1)
            out[f"patch_embed{s}.{rest}"] = value
        elif part == 2:
            out[f"norm{s}.{rest}"] = value
        else:
            b = re.match(r"^(\d+)\.(.*)$", rest)
            if not b:
                unplaced.append(key)
                continue
            j, tail = b.group(1), b.group(2)
            prefix = f"block{s}.{j}."
            if tail.startswith("attn.attn.in_proj_"):
                kind = tail[len("attn.attn.in_proj_"):]  # weight | bias
                dim = value.shape[0] // 3
                out[prefix + f"attn.q.{kind}"] = value[:dim]
                out[prefix + f"attn.kv.{kind}"] = value[dim:]
                continue
            for old, new in _MMSEG_BLOCK:
                if tail.startswith(old):
                    if new in ("mlp.fc1.", "mlp.fc2.") and tail.endswith("weight") and value.ndim == 4:
                        value = value.reshape(value.shape[0], value.shape[1])
                    out[prefix + new + tail[len(old):]] = value
                    break
            else:
                unplaced.append(key)
    return out, unplaced


def backbone_state(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The encoder part of a segmentation state dict in NVlabs names (our MiT's), and the
    backbone keys that have no place there (the unused ImageNet `head` included)."""
    scheme = scheme_of(sd)
    if scheme == "hf":
        hf = {k: v for k, v in sd.items() if k.startswith("segformer.")}
        try:
            out = convert_hf_state_dict(hf)
        except ValueError as err:
            raise PretrainedError(str(err)) from None
        return {k: v for k, v in out.items() if not k.startswith("head.")}, []
    raw = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    if scheme == "mmseg":
        out, unplaced = mmseg_backbone_to_nvlabs(raw)
    else:
        out, unplaced = raw, []
    unplaced += [k for k in out if k.startswith("head.")]
    out = {k: v for k, v in out.items() if not k.startswith("head.")}
    return out, ["backbone." + k for k in unplaced]


# ------------------------------------------------------------------------------------- decoder


def _fold_bn(w: torch.Tensor, b: torch.Tensor | None, bn: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear map followed by inference-mode BatchNorm as one linear map (weight, bias)."""
    scale = bn["weight"].double() / torch.sqrt(bn["running_var"].double() + MMSEG_BN_EPS)
    bias = b.double() if b is not None else torch.zeros_like(scale)
    w2 = (w.double() * scale.reshape(-1, *([1] * (w.ndim - 1)))).to(w.dtype)
    b2 = (bn["bias"].double() + (bias - bn["running_mean"].double()) * scale).to(w.dtype)
    return w2, b2


def decoder_state(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """The head of a segmentation state dict in our `SegFormerHead` names (without
    `decode_head.`): (tensors, the file's head keys left unused, notes)."""
    head = {k[len("decode_head."):]: v for k, v in sd.items() if k.startswith("decode_head.")}
    notes: list[str] = []
    scheme = scheme_of(sd)
    if scheme == "hf":
        return _hf_head(head)
    if scheme != "mmseg":
        used = {k: v for k, v in head.items() if not k.startswith("conv_seg.")}
        unused = [k for k in head if k not in used]
        return used, ["decode_head." + k for k in unused], notes
    out: dict[str, torch.Tensor] = {}
    taken: set[str] = set()
    for i in range(4):
        p = f"convs.{i}."
        w = head.get(p + "conv.weight")
        if w is None:
            continue
        bn = {k: head[p + "bn." + k] for k in _BN_KEYS if p + "bn." + k in head}
        b = head.get(p + "conv.bias")
        if len(bn) == len(_BN_KEYS):
            w2, b2 = _fold_bn(w.reshape(w.shape[0], -1), b, bn)
        else:
            w2 = w.reshape(w.shape[0], -1)
            b2 = b if b is not None else torch.zeros(w.shape[0], dtype=w.dtype)
        out[f"linear_c{i + 1}.proj.weight"], out[f"linear_c{i + 1}.proj.bias"] = w2, b2
        taken |= {k for k in head if k.startswith(p) and not k.endswith("num_batches_tracked")}
        taken.add(p + "bn.num_batches_tracked")
    if out:
        notes.append("mmseg head: each stage's BatchNorm is folded into linear_c*.proj; its ReLU "
                     "has no counterpart in the NVlabs head (decoder = a close start, not exact)")
    fw = head.get("fusion_conv.conv.weight")
    if fw is not None:
        if fw.shape[1] % 4 == 0:  # mmseg concatenates stages 1..4, ours 4..1
            fw = torch.cat(list(fw.chunk(4, dim=1))[::-1], dim=1)
        out["linear_fuse.conv.weight"] = fw
        taken.add("fusion_conv.conv.weight")
    for k, v in head.items():
        if k.startswith("fusion_conv.bn."):
            out["linear_fuse.bn." + k[len("fusion_conv.bn."):]] = v
            taken.add(k)
        elif k.startswith("conv_seg."):
            out["linear_pred." + k[len("conv_seg."):]] = v
            taken.add(k)
    return out, ["decode_head." + k for k in head if k not in taken], notes


def _hf_head(head: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """transformers' SegformerDecodeHead (`linear_c.{i}` on the Hub, `linear_projections.{i}` in
    transformers >= 5; `linear_fuse` + `batch_norm` = NVlabs' ConvModule; `classifier`): it
    concatenates stages 4..1 like NVlabs, so every tensor maps as it is."""
    out: dict[str, torch.Tensor] = {}
    unused = []
    for k, v in head.items():
        m = re.match(r"^(?:linear_c|linear_projections)\.(\d)\.(.*)$", k)
        if m:
            out[f"linear_c{int(m.group(1)) + 1}.{m.group(2)}"] = v
        elif k.startswith("linear_fuse."):
            out["linear_fuse.conv." + k[len("linear_fuse."):]] = v
        elif k.startswith("batch_norm."):
            out["linear_fuse.bn." + k[len("batch_norm."):]] = v
        elif k.startswith("classifier."):
            out["linear_pred." + k[len("classifier."):]] = v
        else:
            unused.append("decode_head." + k)
    return out, unused, []


# ---------------------------------------------------------------------------------- loading


def _place(module: nn.Module, prefix: str, tensors: dict[str, torch.Tensor], report: LoadReport
           ) -> dict[str, torch.Tensor]:
    """The tensors whose names and shapes fit `module` (keyed by the module's own names)."""
    own = module.state_dict()
    fit: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if k not in own:
            report.unused.append(prefix + k)
        elif tuple(own[k].shape) != tuple(v.shape):
            report.mismatched.append((prefix + k, tuple(own[k].shape), tuple(v.shape)))
        else:
            fit[k] = v
    report.loaded += [prefix + k for k in fit]
    report.missing += [prefix + k for k in own if k not in tensors]
    return fit


def load_segmentation_weights(net: nn.Module, path: str | Path, *,
                              encoders: tuple[str, ...] = ("rgb_encoder",), decoder: bool = True,
                              state: dict[str, torch.Tensor] | None = None) -> LoadReport:
    """Load a SegFormer segmentation checkpoint's backbone into each named encoder of `net`
    (a `CACDNet`) and its head into `net.decode_head`, where names and shapes fit.

    An encoder with other than 3 input channels gets the RGB filters averaged over channels.
    Raises PretrainedError when the file is not a segmentation checkpoint or nothing fits.
    """
    sd = state if state is not None else read_state_dict(path)
    if not is_segmentation_state(sd):
        raise PretrainedError(f"{path}: not a segmentation checkpoint (no backbone.* or "
                              "decode_head.* keys); an encoder-only file loads with load_mit_weights")
    report = LoadReport(str(path), scheme_of(sd))
    backbone, unplaced = backbone_state(sd)
    report.unused += unplaced
    report.unused += [k for k in sd if not k.startswith(("backbone.", "decode_head.", "segformer."))]
    targets: list[tuple[nn.Module, str, dict[str, torch.Tensor]]] = []
    for name in encoders:
        enc = getattr(net, name, None)
        if not isinstance(enc, MixVisionTransformer):
            continue
        tensors = adapt_input_channels(dict(backbone), enc.in_chans)
        targets.append((enc, name + ".", tensors))
        n_fit = sum(1 for k, v in tensors.items()
                    if k in enc.state_dict() and enc.state_dict()[k].shape == v.shape)
        if backbone and n_fit < 0.9 * len(enc.state_dict()):
            report.notes.append(f"{name}: only {n_fit} of {len(enc.state_dict())} tensors fit the "
                                "file's backbone: is model.backbone the checkpoint's MiT variant?")
    head = getattr(net, "decode_head", None)
    if decoder and isinstance(head, nn.Module):
        tensors, unused, notes = decoder_state(sd)
        report.unused += unused
        report.notes += notes
        targets.append((head, "decode_head.", tensors))
    elif not decoder:
        report.unused += [k for k in sd if k.startswith("decode_head.")]
    placed = [(module, _place(module, prefix, tensors, report)) for module, prefix, tensors in targets]
    if not report.loaded:
        raise PretrainedError(f"{path}: no tensor of the file fits this network "
                              f"({len(report.mismatched)} of other shapes, {len(report.unused)} "
                              "unknown names): wrong file, or another backbone?")
    with torch.no_grad():
        for module, fit in placed:
            result = module.load_state_dict(fit, strict=False)
            assert not result.unexpected_keys, result.unexpected_keys  # _place checked the names
    return report


def load_pretrained(net: nn.Module, rgb: str | Path | None, event: str | Path | None
                    ) -> list[LoadReport]:
    """What `model.pretrained_rgb` / `model.pretrained_event` ask for: each file is an encoder
    (`mit_b*.pth`, `nvidia/mit-b*` folder: strict, `load_mit_weights`) or a segmentation
    checkpoint (its backbone into that encoder; the decoder from the first such file, RGB first).
    Returns the reports of the segmentation checkpoints (print their `summary()`)."""
    from model.mit import load_mit_weights

    reports = []
    decoder_done = False
    for enc_name, path in (("rgb_encoder", rgb), ("event_encoder", event)):
        if not path or not hasattr(net, enc_name):
            continue
        sd = read_state_dict(path)
        if is_segmentation_state(sd):
            rep = load_segmentation_weights(net, path, encoders=(enc_name,), decoder=not decoder_done,
                                            state=sd)
            decoder_done = decoder_done or any(k.startswith("decode_head.") for k in rep.loaded)
            reports.append(rep)
        else:
            load_mit_weights(getattr(net, enc_name), path)
    return reports
