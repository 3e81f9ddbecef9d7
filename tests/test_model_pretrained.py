"""SegFormer segmentation checkpoints into CACD: NVlabs, mmsegmentation and transformers names.

The checkpoints are made here from a randomly initialised network of ours, renamed the way each
project names its SegFormer (written from their sources: NVlabs' segformer_head.py, mmseg's
mit.py / segformer_head.py / mit2mmseg.py), so loading must give back exactly those tensors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.cacd import CACDNet, NetConfig
from model.mit import load_mit_weights
from model.pretrained import PretrainedError, load_pretrained, load_segmentation_weights

D = 256  # SegFormer-B0's decoder width


def _net(seed: int, modalities: str = "both", backbone: str = "mit_b0") -> CACDNet:
    torch.manual_seed(seed)
    net = CACDNet(NetConfig(backbone=backbone, modalities=modalities, event_channels=5)).eval()
    with torch.no_grad():  # BN statistics and affine away from their defaults
        for name, t in net.state_dict().items():
            if "bn." in name and t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5)
    return net


def _nvlabs(net: CACDNet) -> dict[str, torch.Tensor]:
    sd = {"backbone." + k: v.clone() for k, v in net.rgb_encoder.state_dict().items()}
    sd.update({"decode_head." + k: v.clone() for k, v in net.decode_head.state_dict().items()})
    sd["decode_head.conv_seg.weight"] = torch.randn(19, 128, 1, 1)  # BaseDecodeHead's, unused
    sd["decode_head.conv_seg.bias"] = torch.randn(19)
    return sd


def _mmseg_backbone(enc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (NVlabs) MiT names -> mmseg's, as tools/model_converters/mit2mmseg.py does it."""
    out = {}
    for k, v in enc.items():
        if m := re.match(r"patch_embed(\d)\.(proj|norm)\.(.*)", k):
            part = "projection" if m[2] == "proj" else "norm"
            out[f"backbone.layers.{int(m[1]) - 1}.0.{part}.{m[3]}"] = v
        elif m := re.match(r"norm(\d)\.(.*)", k):
            out[f"backbone.layers.{int(m[1]) - 1}.2.{m[2]}"] = v
        elif m := re.match(r"block(\d)\.(\d+)\.(.*)", k):
            pre, rest = f"backbone.layers.{int(m[1]) - 1}.1.{m[2]}.", m[3]
            if rest.startswith("attn.kv."):
                continue
            if rest.startswith("attn.q."):
                kind = rest.rsplit(".", 1)[1]
                kv = enc[k.replace("attn.q.", "attn.kv.")]
                out[pre + f"attn.attn.in_proj_{kind}"] = torch.cat([v, kv], 0)
                continue
            for ours, theirs in (("attn.proj.", "attn.attn.out_proj."), ("mlp.fc1.", "ffn.layers.0."),
                                 ("mlp.dwconv.dwconv.", "ffn.layers.1."), ("mlp.fc2.", "ffn.layers.4.")):
                if rest.startswith(ours):
                    if ours in ("mlp.fc1.", "mlp.fc2.") and rest.endswith("weight"):
                        v = v[:, :, None, None]
                    rest = theirs + rest[len(ours):]
                    break
            out[pre + rest] = v
        else:
            raise AssertionError(k)
    return out


def _mmseg(net: CACDNet, identity_bn: bool = True) -> dict[str, torch.Tensor]:
    """mmseg's SegformerHead: per stage 1x1 conv (no bias) + BN; fusion over stages 1..4."""
    sd = _mmseg_backbone({k: v.clone() for k, v in net.rgb_encoder.state_dict().items()})
    head = net.decode_head.state_dict()
    for i in range(4):
        w, b = head[f"linear_c{i + 1}.proj.weight"], head[f"linear_c{i + 1}.proj.bias"]
        p = f"decode_head.convs.{i}."
        sd[p + "conv.weight"] = w[:, :, None, None].clone()
        if identity_bn:  # BN that leaves the conv's output as it is, plus our bias
            sd[p + "bn.weight"], sd[p + "bn.bias"] = torch.ones(D), b.clone()
            sd[p + "bn.running_mean"], sd[p + "bn.running_var"] = torch.zeros(D), torch.full((D,), 1 - 1e-5)
        else:  # random statistics, shifted up so that mmseg's ReLU passes everything
            sd[p + "bn.weight"], sd[p + "bn.bias"] = torch.rand(D) + 0.5, torch.rand(D) + 100.0
            sd[p + "bn.running_mean"], sd[p + "bn.running_var"] = torch.randn(D), torch.rand(D) + 0.5
        sd[p + "bn.num_batches_tracked"] = torch.tensor(7)
    fw = head["linear_fuse.conv.weight"]
    sd["decode_head.fusion_conv.conv.weight"] = torch.cat(list(fw.chunk(4, 1))[::-1], 1)  # 1..4
    for k, v in head.items():
        if k.startswith("linear_fuse.bn."):
            sd["decode_head.fusion_conv.bn." + k[len("linear_fuse.bn."):]] = v.clone()
        elif k.startswith("linear_pred."):
            sd["decode_head.conv_seg." + k[len("linear_pred."):]] = v.clone()
    return sd


def _save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    meta = {"CLASSES": ("road", "sidewalk"), "PALETTE": [[128, 64, 128]], "mmseg_version": "0.20.0",
            "config": "model = dict(type='EncoderDecoder')", "iter": 160000}
    torch.save({"meta": meta, "state_dict": sd}, path)
    return path


def _assert_same(dst: torch.nn.Module, src: torch.nn.Module, exact: bool = True) -> None:
    ref = src.state_dict()
    for k, v in dst.state_dict().items():
        if exact:
            assert torch.equal(v, ref[k]), k
        else:
            torch.testing.assert_close(v, ref[k], rtol=1e-5, atol=1e-6, msg=k)


def test_nvlabs_checkpoint_loads_exactly(tmp_path: Path) -> None:
    src, dst = _net(1), _net(2)
    event_before = {k: v.clone() for k, v in dst.event_encoder.state_dict().items()}
    path = _save(_nvlabs(src), tmp_path / "segformer.b0.1024x1024.city.160k.pth")
    rep = load_segmentation_weights(dst, path)
    assert rep.scheme == "nvlabs"
    _assert_same(dst.rgb_encoder, src.rgb_encoder)
    _assert_same(dst.decode_head, src.decode_head)
    for k, v in dst.event_encoder.state_dict().items():  # only the encoders asked for
        assert torch.equal(v, event_before[k]), k
    n = len(src.rgb_encoder.state_dict()) + len(src.decode_head.state_dict())
    assert len(rep.loaded) == n and not rep.mismatched and not rep.missing
    assert sorted(rep.unused) == ["decode_head.conv_seg.bias", "decode_head.conv_seg.weight"]
    assert f"{n} tensors loaded, 0 skipped (shape mismatch), 0 missing" in rep.summary()


def test_mmseg_checkpoint_loads(tmp_path: Path) -> None:
    src, dst = _net(1), _net(2)
    sd = _mmseg(src)
    assert not any(k.startswith(("backbone.block", "backbone.patch_embed")) for k in sd)
    rep = load_segmentation_weights(dst, _save(sd, tmp_path / "segformer_mit-b0_cityscapes.pth"))
    assert rep.scheme == "mmseg"
    _assert_same(dst.rgb_encoder, src.rgb_encoder)  # renaming and the q/kv split are exact
    _assert_same(dst.decode_head, src.decode_head, exact=False)  # BN folded in float64
    assert not rep.mismatched and not rep.missing and not rep.unused
    assert any("ReLU" in n for n in rep.notes)


def test_mmseg_head_computes_what_mmseg_computes(tmp_path: Path) -> None:
    """Our head, loaded from an mmseg head with real BN statistics, against mmseg's forward
    (convs in stage order, concatenation 1..4, fusion conv + BN + ReLU, conv_seg); the stage
    BN biases are large so that mmseg's per-stage ReLU is the identity here."""
    src, dst = _net(1), _net(2)
    sd = _mmseg(src, identity_bn=False)
    load_segmentation_weights(dst, _save(sd, tmp_path / "m.pth"))
    feats = [torch.randn(2, c, 32 // s, 48 // s) for c, s in zip((32, 64, 160, 256), (1, 2, 4, 8),
                                                                  strict=True)]

    def bn(x: torch.Tensor, p: str) -> torch.Tensor:
        return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"],
                            sd[p + "bias"], False, 0.0, 1e-5)

    outs = []
    for i, f in enumerate(feats):
        p = f"decode_head.convs.{i}."
        y = F.relu(bn(F.conv2d(f, sd[p + "conv.weight"]), p + "bn."))
        outs.append(F.interpolate(y, size=feats[0].shape[2:], mode="bilinear", align_corners=False))
    fused = F.relu(bn(F.conv2d(torch.cat(outs, 1), sd["decode_head.fusion_conv.conv.weight"]),
                      "decode_head.fusion_conv.bn."))
    ref = F.conv2d(fused, sd["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.bias"])
    with torch.no_grad():
        ours = dst.decode_head(feats)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # and the fusion order matters: unreversed blocks would give another answer
    with torch.no_grad():
        w = dst.decode_head.linear_fuse.conv.weight
        w.copy_(torch.cat(list(w.chunk(4, 1))[::-1], 1))
        assert (dst.decode_head(feats) - ref).abs().max() > 1e-2


def test_ade_head_is_skipped_and_reported(tmp_path: Path) -> None:
    src, dst = _net(1), _net(2)
    pred_before = dst.decode_head.linear_pred.weight.clone()
    sd = _nvlabs(src)
    sd["decode_head.linear_pred.weight"] = torch.randn(150, D, 1, 1)  # ADE20K's 150 classes
    sd["decode_head.linear_pred.bias"] = torch.randn(150)
    rep = load_segmentation_weights(dst, _save(sd, tmp_path / "segformer.b0.512x512.ade.160k.pth"))
    assert sorted(k for k, _, _ in rep.mismatched) == ["decode_head.linear_pred.bias",
                                                      "decode_head.linear_pred.weight"]
    assert ("decode_head.linear_pred.weight", (19, D, 1, 1), (150, D, 1, 1)) in rep.mismatched
    assert torch.equal(dst.decode_head.linear_pred.weight, pred_before)
    assert torch.equal(dst.decode_head.linear_fuse.conv.weight, src.decode_head.linear_fuse.conv.weight)
    _assert_same(dst.rgb_encoder, src.rgb_encoder)
    assert "2 skipped (shape mismatch)" in rep.summary() and "[19, 256, 1, 1] vs file [150" in rep.summary()


def test_files_that_do_not_fit_are_clear_errors(tmp_path: Path) -> None:
    net = _net(2)
    odd = _save({"backbone.stem.conv.weight": torch.randn(8, 3, 3, 3),
                 "decode_head.cls.weight": torch.randn(19, 8)}, tmp_path / "deeplab.pth")
    with pytest.raises(PretrainedError, match=r"deeplab\.pth: no tensor of the file fits"):
        load_segmentation_weights(net, odd)
    enc_only = tmp_path / "mit_b0.pth"
    torch.save(net.rgb_encoder.state_dict(), enc_only)
    with pytest.raises(PretrainedError, match="not a segmentation checkpoint"):
        load_segmentation_weights(net, enc_only)


def test_another_variant_is_flagged(tmp_path: Path) -> None:
    b1 = _save(_nvlabs(_net(1, "image", "mit_b1")), tmp_path / "b1.pth")
    rep = load_segmentation_weights(_net(2), b1)  # B0 network: only the decoder's fuse/pred fit
    assert rep.mismatched and any("model.backbone" in n for n in rep.notes)
    assert all(k.startswith("decode_head.") for k in rep.loaded)


class _NotPlainData:
    pass


def test_pickled_objects_are_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "mmengine.pth"
    torch.save({"state_dict": _nvlabs(_net(1)), "message_hub": _NotPlainData()}, path)
    with pytest.raises(ValueError, match=r"mmengine\.pth: holds objects other than tensors"):
        load_segmentation_weights(_net(2), path)


def test_config_keys_take_either_kind(tmp_path: Path) -> None:
    src = _net(1)
    seg = _save(_mmseg(src), tmp_path / "seg.pth")
    dst = _net(2)
    reports = load_pretrained(dst, rgb=seg, event=seg)
    assert len(reports) == 2
    _assert_same(dst.rgb_encoder, src.rgb_encoder)
    _assert_same(dst.decode_head, src.decode_head, exact=False)
    assert not any(k.startswith("decode_head.") for k in reports[1].loaded)  # decoder once
    w = dst.event_encoder.patch_embed1.proj.weight  # 5 event channels from RGB filters
    assert w.shape[1] == 5
    torch.testing.assert_close(w.sum(1), src.rgb_encoder.patch_embed1.proj.weight.sum(1))
    torch.testing.assert_close(dst.event_encoder.block2[1].attn.kv.weight,
                               src.rgb_encoder.block2[1].attn.kv.weight)
    # an encoder file still loads strictly; a segmentation file gives load_mit_weights its backbone
    enc_file = tmp_path / "mit_b0.pth"
    torch.save(src.rgb_encoder.state_dict(), enc_file)
    other = _net(3)
    assert load_pretrained(other, rgb=enc_file, event=None) == []
    _assert_same(other.rgb_encoder, src.rgb_encoder)
    third = _net(4)
    load_mit_weights(third.rgb_encoder, seg)
    _assert_same(third.rgb_encoder, src.rgb_encoder)


def test_transformers_segformer_gives_the_same_logits(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers", reason="transformers (test-only) not installed")
    from safetensors.torch import save_file

    cfg = transformers.SegformerConfig(
        num_channels=3, hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2], num_labels=19,
        num_attention_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1], decoder_hidden_size=D,
        drop_path_rate=0.0, layer_norm_eps=1e-6)
    torch.manual_seed(0)
    hf = transformers.SegformerForSemanticSegmentation(cfg).eval()
    with torch.no_grad():
        for name, t in hf.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.rand_like(t) * 0.1 if "running_var" in name else torch.randn_like(t) * 0.05)
    folder = tmp_path / "segformer-b0-finetuned-cityscapes"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(folder / "model.safetensors"))
    net = _net(2, "image")
    rep = load_segmentation_weights(net, folder)
    assert rep.scheme == "hf" and not rep.mismatched and not rep.missing and not rep.unused
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref = hf(pixel_values=x).logits
        ours = net.decode_head(net.rgb_encoder(x))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # the Hub's files name the stage projections `linear_c.{i}` (transformers < 5)
    legacy = {k.replace("decode_head.linear_projections.", "decode_head.linear_c."): v
              for k, v in hf.state_dict().items()}
    assert any(k.startswith("decode_head.linear_c.0.") for k in legacy)
    again = _net(3, "image")
    load_segmentation_weights(again, _save(legacy, tmp_path / "legacy.pth"))
    _assert_same(again.decode_head, net.decode_head)


def test_cacd_train_config_loads_encoder_and_decoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """`cacd train --set model.pretrained_rgb=<segformer>.pth` reaches the decoder too."""
    from model.config import resolve
    from model.train import build_net

    src = _net(1)
    path = _save(_nvlabs(src), tmp_path / "segformer.b0.city.pth")
    cfg = resolve(None, ["model.backbone=mit_b0", f"model.pretrained_rgb={path}"])
    net = build_net(cfg, 5)
    _assert_same(net.rgb_encoder, src.rgb_encoder)
    _assert_same(net.decode_head, src.decode_head)
    assert "tensors loaded" in capsys.readouterr().err
