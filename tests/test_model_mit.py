"""MiT encoder: published sizes, NVlabs key names and strict loading, Hugging Face parity."""

from __future__ import annotations

import re

import pytest
import torch

from model.mit import (
    MIT_SPECS,
    MixVisionTransformer,
    convert_hf_state_dict,
    count_parameters,
    load_mit_weights,
)

# encoder parameters (millions) as published for MiT-B0..B5 (Hugging Face nvidia/mit-b*)
PUBLISHED_M = {"mit_b0": 3.32, "mit_b1": 13.15, "mit_b2": 24.20, "mit_b3": 44.07,
               "mit_b4": 60.84, "mit_b5": 81.44}

# a sample of the keys of NVlabs' ImageNet mit_b0.pth
NVLABS_KEYS = [
    "patch_embed1.proj.weight", "patch_embed1.norm.bias", "patch_embed4.proj.weight",
    "block1.0.norm1.weight", "block1.0.attn.q.weight", "block1.0.attn.kv.weight",
    "block1.0.attn.kv.bias", "block1.0.attn.proj.weight", "block1.0.attn.sr.weight",
    "block1.0.attn.norm.weight", "block1.1.mlp.fc1.weight", "block1.1.mlp.dwconv.dwconv.weight",
    "block3.1.mlp.fc2.bias", "block4.1.attn.q.bias", "norm1.weight", "norm4.bias",
    "head.weight", "head.bias",
]


@pytest.mark.parametrize("name", list(MIT_SPECS))
def test_parameter_counts_match_published(name):
    with torch.device("meta"):
        enc = MixVisionTransformer(name)
    assert round(count_parameters(enc) / 1e6, 2) == PUBLISHED_M[name]


def test_nvlabs_names_and_strict_pth_roundtrip(tmp_path):
    src = MixVisionTransformer("mit_b0", num_classes=1000)
    keys = set(src.state_dict())
    assert set(NVLABS_KEYS) <= keys
    assert not any("block4.0.attn.sr" in k for k in keys)  # stage 4 has sr_ratio 1
    path = tmp_path / "mit_b0.pth"
    torch.save(src.state_dict(), path)
    enc = MixVisionTransformer("mit_b0")  # no ImageNet head: head.* is dropped on load
    load_mit_weights(enc, path)
    for k, v in enc.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
    with_head = MixVisionTransformer("mit_b0", num_classes=1000)
    load_mit_weights(with_head, path)  # strict including the head
    assert torch.equal(with_head.head.weight, src.head.weight)


def test_mismatched_weights_fail_with_the_file_name(tmp_path):
    path = tmp_path / "mit_b1.pth"
    torch.save(MixVisionTransformer("mit_b1").state_dict(), path)
    with pytest.raises(ValueError, match="mit_b1.pth"):
        load_mit_weights(MixVisionTransformer("mit_b0"), path)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_mit_weights(MixVisionTransformer("mit_b0"), tmp_path / "missing.pth")


def test_event_encoder_takes_rgb_weights(tmp_path):
    src = MixVisionTransformer("mit_b0")
    path = tmp_path / "w.pth"
    torch.save(src.state_dict(), path)
    enc = MixVisionTransformer("mit_b0", in_chans=5)
    load_mit_weights(enc, path)
    w = enc.patch_embed1.proj.weight
    assert w.shape[1] == 5
    torch.testing.assert_close(w.sum(1), src.patch_embed1.proj.weight.sum(1))


def _hf_model(seed: int = 0):
    transformers = pytest.importorskip(
        "transformers", reason="transformers (test-only dependency) is not installed")
    cfg = transformers.SegformerConfig(
        num_channels=3, hidden_sizes=[32, 64, 160, 256], depths=[2, 2, 2, 2],
        num_attention_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1], decoder_hidden_size=256,
        drop_path_rate=0.0)
    torch.manual_seed(seed)
    hf = transformers.SegformerModel(cfg).eval()
    with torch.no_grad():  # randomise everything, LayerNorm affine included
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return hf


def test_parity_with_transformers_segformer(tmp_path):
    hf = _hf_model()
    from safetensors.torch import save_file

    folder = tmp_path / "mit-b0"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()},
              str(folder / "model.safetensors"))
    enc = MixVisionTransformer("mit_b0", drop_path_rate=0.0, eps=1e-5).eval()  # HF: eps 1e-5
    load_mit_weights(enc, folder)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True).hidden_states
        out = enc(x)
    assert len(ref) == len(out) == 4
    for a, b in zip(ref, out, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)


def test_hub_legacy_names_convert():
    """nvidia/mit-b* files on the Hub use the pre-v5 names (encoder.block.i.j.attention.self)."""
    hf = _hf_model(1)
    rules = [
        (r"^stages\.(\d)\.patch_embeddings\.", r"segformer.encoder.patch_embeddings.\1."),
        (r"^stages\.(\d)\.blocks\.(\d+)\.", r"segformer.encoder.block.\1.\2."),
        (r"^stages\.(\d)\.layer_norm\.", r"segformer.encoder.layer_norm.\1."),
        (r"attention\.q_proj", "attention.self.query"),
        (r"attention\.k_proj", "attention.self.key"),
        (r"attention\.v_proj", "attention.self.value"),
        (r"attention\.o_proj", "attention.output.dense"),
        (r"attention\.sequence_reduction\.sequence_reduction", "attention.self.sr"),
        (r"attention\.sequence_reduction\.layer_norm", "attention.self.layer_norm"),
        (r"mlp\.fc1", "mlp.dense1"), (r"mlp\.fc2", "mlp.dense2"),
        (r"layernorm_before", "layer_norm_1"), (r"layernorm_after", "layer_norm_2"),
    ]
    legacy = {}
    for k, v in hf.state_dict().items():
        for pat, rep in rules:
            k = re.sub(pat, rep, k)
        legacy[k] = v
    legacy["classifier.weight"] = torch.zeros(1000, 256)
    legacy["classifier.bias"] = torch.zeros(1000)
    a = convert_hf_state_dict(legacy)
    b = convert_hf_state_dict(hf.state_dict())
    assert set(a) == set(b) | {"head.weight", "head.bias"}
    for k in b:
        assert torch.equal(a[k], b[k])
    with pytest.raises(ValueError, match="unrecognised"):
        convert_hf_state_dict({"segformer.encoder.mystery.weight": torch.zeros(1)})
