"""The CACD network: shapes, parameter budget, training-only heads stay out of inference."""

from __future__ import annotations

import pytest
import torch

from model.cacd import CACDNet, NetConfig
from model.losses import LossWeights, total_loss


def _batch(b=2, h=64, w=96, c=3):
    torch.manual_seed(0)
    ids = torch.zeros(b, h, w, dtype=torch.long)
    ids[:, :, : w // 2] = 1
    ids[:, : h // 2, w // 2:] = 2
    ids[:, h // 2:, w // 2:] = 3
    exposure = torch.zeros(b, h, w, dtype=torch.uint8)
    exposure[:, : h // 2] = 2
    return {"image": torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8),
            "events": torch.rand(b, c, h, w), "label": torch.randint(0, 19, (b, h, w)),
            "masks": ids, "gim": torch.rand(b, h, w), "exposure": exposure}


def test_forward_shapes_and_modalities():
    x = _batch()
    for mods in ("both", "image", "event"):
        net = CACDNet(NetConfig(modalities=mods)).eval()
        out = net(x["image"], x["events"])
        assert out.shape == (2, 19, 16, 24)
    net = CACDNet(NetConfig(event_channels=5))
    assert net(x["image"], torch.rand(2, 5, 64, 96)).shape == (2, 19, 16, 24)
    with pytest.raises(ValueError, match="modalities"):
        CACDNet(NetConfig(modalities="rgb"))


def test_training_heads_add_no_inference_cost():
    full = CACDNet(NetConfig(hfca=True, jbcd=True))
    plain = CACDNet(NetConfig(hfca=False, jbcd=False))
    assert full.inference_parameters() == plain.inference_parameters()
    n_full = sum(p.numel() for p in full.parameters())
    assert n_full > full.inference_parameters()
    called = []
    for name in ("proj_img", "proj_evt", "content_img", "content_evt"):
        getattr(full, name).register_forward_hook(lambda *a, n=name: called.append(n))
    x = _batch()
    full.eval()
    with torch.no_grad():
        full(x["image"], x["events"])
    assert called == []  # inference: encoders + fusion + decoder only
    full(x["image"], x["events"], with_aux=True)
    # content_evt twice: on the event features and on their detached copy (the teacher probe)
    assert sorted(called) == ["content_evt", "content_evt", "content_img", "proj_evt", "proj_img"]


def test_single_stream_is_segformer_sized():
    # SegFormer-B0 (19 classes): 3.32M encoder + 0.40M decoder
    net = CACDNet(NetConfig(modalities="image"))
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 2) == 3.72


def test_total_loss_reaches_every_parameter():
    net = CACDNet(NetConfig(proj_dim=16))
    x = _batch()
    logits, aux = net(x["image"], x["events"], with_aux=True)
    loss, parts = total_loss(logits, x["label"], aux, x, LossWeights(), True, True)
    assert {"ce", "cluster", "align", "boundary", "content"} <= set(parts)
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []
    # weighting per eq. 8
    w = LossWeights()
    expect = (parts["ce"] + w.cluster * parts["cluster"] + w.align * parts["align"]
              + w.boundary * parts["boundary"] + w.content * parts["content"])
    assert parts["total"] == pytest.approx(expect, rel=1e-5)


def test_losses_without_masks_or_exposure_keep_graph():
    net = CACDNet(NetConfig(proj_dim=16))
    x = _batch()
    x.pop("masks")
    x["exposure"].zero_()
    logits, aux = net(x["image"], x["events"], with_aux=True)
    loss, parts = total_loss(logits, x["label"], aux, x, LossWeights(), True, True)
    assert "cluster" not in parts and "content" not in parts
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
