"""Backbones: heads, freezing, stages, parameter reports, optimizer checks, and the frozen-BatchNorm guarantee."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_utils import backbones as bb
from course_utils.training import fit
from course_utils.weights import SPECS, hub_checkpoint_dir


@pytest.fixture(scope="module")
def mobilenet():
    return bb.load_backbone("mobilenet_v2")


def test_pretrained_mobilenet_loads_real_imagenet_weights(mobilenet):
    checkpoint = torch.load(
        hub_checkpoint_dir() / SPECS["mobilenet_v2"].filename, map_location="cpu", weights_only=True
    )
    loaded = mobilenet.state_dict()
    assert set(loaded) == set(checkpoint)
    assert all(torch.equal(loaded[k], checkpoint[k]) for k in checkpoint)  # every tensor is the verified file's
    random = bb.load_backbone("mobilenet_v2", pretrained=False)
    assert not torch.equal(random.features[0][0].weight, checkpoint["features.0.0.weight"])
    assert len(bb.imagenet_categories()) == 1000 and bb.imagenet_categories()[285] == "Egyptian cat"


def test_replace_head_both_families():
    for name, dim in (("mobilenet_v2", 1280), ("resnet18", 512)):
        model = bb.load_backbone(name, pretrained=False)
        bb.freeze_all(model)
        head = bb.replace_head(model, 3)
        assert bb.head_of(model) is head and head.out_features == 3 and bb.feature_dim(model) == dim
        assert bb.count_parameters(model, trainable_only=True) == dim * 3 + 3
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 3)


def test_replace_head_rejects_single_class():
    with pytest.raises(ValueError, match="at least 2"):
        bb.replace_head(bb.load_backbone("resnet18", pretrained=False), 1)


def test_unfreeze_from_named_stage_and_report():
    model = bb.load_backbone("mobilenet_v2", pretrained=False)
    bb.replace_head(model, 10)
    trainable = bb.unfreeze_from(model, "block6")
    assert trainable == ["block6", "block7", "last_conv", "head"]
    # block6 is torchvision's features[14..16] (the 160-channel blocks): exactly those and later train.
    later = ("features.14.", "features.15.", "features.16.", "features.17.", "features.18.", "classifier.")
    for name, param in model.named_parameters():
        assert param.requires_grad is name.startswith(later), name
    rows = {row["stage"]: row for row in bb.parameter_report(model)}
    assert rows["all"]["total"] == 3_504_872 - 1_281_000 + 12_810  # torchvision's count, 10-class head
    assert rows["all"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad) == 1_694_154
    assert rows["block5"]["trainable"] == 0 and rows["stem"]["trainable"] == 0
    assert (
        rows["block6"]["trainable"]
        == rows["block6"]["total"]
        == sum(p.numel() for i in (14, 15, 16) for p in model.features[i].parameters())
    )
    assert rows["head"]["total"] == 1280 * 10 + 10
    assert sum(r["total"] for s, r in rows.items() if s != "all") == rows["all"]["total"]  # stages cover all
    table = bb.format_parameter_report(model).splitlines()
    assert table[0].split() == ["stage", "total", "trainable"] and len(table) == 1 + len(rows)
    assert table[7].split() == ["block6", "795,264", "795,264"] and table[-1].split() == [
        "all",
        "2,236,682",
        "1,694,154",
    ]
    with pytest.raises(ValueError, match="stages: stem"):
        bb.unfreeze_from(model, "layer9")


def test_resnet_stages_cover_all_parameters():
    model = bb.load_backbone("resnet18", pretrained=False)
    rows = {row["stage"]: row for row in bb.parameter_report(model)}
    assert list(rows)[:-1] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert sum(r["total"] for s, r in rows.items() if s != "all") == rows["all"]["total"] == 11_689_512


def test_optimizer_check_finds_stale_and_frozen_parameters():
    model = bb.load_backbone("resnet18", pretrained=False)
    bb.freeze_all(model)
    bb.replace_head(model, 3)
    good = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    assert bb.optimizer_matches_trainable(good, model) and bb.optimizer_parameter_problems(good, model) == []
    bb.unfreeze_from(model, "layer4")  # unfrozen after the optimizer was built: never updated
    problems = bb.optimizer_parameter_problems(good, model)
    layer4 = sorted(
        f"trainable but not in the optimizer (never updated): {n}"
        for n, _ in model.layer4.named_parameters(prefix="layer4")
    )
    assert problems == layer4 and not bb.optimizer_matches_trainable(good, model)
    too_many = torch.optim.SGD(model.parameters(), lr=0.1)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert bb.optimizer_parameter_problems(too_many, model) == sorted(
        f"in the optimizer but frozen: {n}" for n in frozen
    )


def test_frozen_body_stays_frozen_during_fit_including_batchnorm_statistics(mobilenet):
    model = bb.load_backbone("mobilenet_v2")
    bb.freeze_all(model)
    bb.replace_head(model, 3)
    body_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier")}
    head_before = bb.head_of(model).weight.clone()
    data = TensorDataset(torch.randn(24, 3, 32, 32) * 3 + 1, torch.randint(0, 3, (24,)))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    fit(model, DataLoader(data, batch_size=8), optimizer, epochs=2, frozen_bn_eval=True, progress=False)
    for key, value in model.state_dict().items():
        if not key.startswith("classifier"):
            assert torch.equal(value, body_before[key]), f"{key} moved"
    assert not torch.equal(bb.head_of(model).weight, head_before)


def test_batchnorm_trap_is_real_without_the_guard():
    """Why the guard exists: requires_grad=False alone lets running statistics drift in train mode."""
    model = bb.load_backbone("mobilenet_v2", pretrained=False)
    bb.freeze_all(model)
    before = model.features[1].conv[0][1].running_mean.clone()
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32) * 3 + 1)
    assert not torch.equal(model.features[1].conv[0][1].running_mean, before)


def test_body_features_match_the_head_input():
    for name in ("mobilenet_v2", "resnet18"):
        model = bb.load_backbone(name, pretrained=False).eval()
        x = torch.randn(2, 3, 64, 64)
        feats = bb.body_features(model, x)
        assert feats.shape == (2, bb.feature_dim(model))
        head = bb.head_of(model)
        logits = model.classifier(feats) if name == "mobilenet_v2" else head(feats)
        assert torch.allclose(logits, model(x), atol=1e-5)


@pytest.mark.slow  # a fresh interpreter that loads torch
def test_missing_weights_offline_gives_clear_error(tmp_path):
    env = {
        **os.environ,
        "TORCH_HOME": str(tmp_path / "torch"),
        "COURSE_OFFLINE": "1",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(tmp_path),
        "COURSE_DATA_DIR": str(tmp_path / "data"),
    }
    code = "from course_utils.backbones import load_backbone; load_backbone('resnet18')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0
    assert "WeightsError" in result.stderr and "course fetch weights --backbone resnet18" in result.stderr


def test_unknown_backbone_named_clearly():
    with pytest.raises(ValueError, match="supported: mobilenet_v2, resnet18"):
        bb.load_backbone("vgg16")
    with pytest.raises(TypeError, match="not a supported backbone"):
        bb.stages(nn.Linear(2, 2))
