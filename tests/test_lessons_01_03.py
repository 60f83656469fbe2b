"""Lessons 01-03 keep what the course promises: the classic recipe as written, checked counts, checked claims."""

from __future__ import annotations

from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
RECIPE = """def setup_transfer_learning(num_classes):
    # 1. Download a pretrained network
    model = models.resnet18(weights=models.ResNet18_Weights.IMAGENET1K_V1)
    # 2. Freeze everything else
    for param in model.parameters():
        param.requires_grad = False
    # 3. Delete the final layer and add your own
    num_ftrs = model.fc.in_features
    model.fc = nn.Linear(num_ftrs, num_classes)
    # Only the last layer is trainable now
    return model"""


def checked_outputs(name: str) -> str:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code" and "# NBVAL_CHECK_OUTPUT" in c.source
        for o in c.outputs
    )


def test_lesson_02_shows_the_classic_recipe_and_checks_the_counts():
    nb = nbformat.read(NOTEBOOKS / "02_scenario_a_small_data.ipynb", as_version=4)
    assert any(RECIPE in c.source for c in nb.cells if c.cell_type == "code")
    out = checked_outputs("02_scenario_a_small_data.ipynb")
    assert "trainable parameters: 1,539 of 11,178,051" in out and "equals 512*3 + 3: True" in out
    assert "trainable equals 1280*3 + 3: True" in out
    assert "frozen body unchanged after training (parameters and BatchNorm statistics): True" in out


def test_lesson_03_shows_each_invalidation_reason():
    out = checked_outputs("03_feature_caching.ipynb")
    for line in (
        "rebuilt: transform changed",
        "rebuilt: weights changed",
        "rebuilt: data changed",
        "loaded from cache",
        "checksum differs",
        "no manifest",
        "heads equal within 1e-3: True",
    ):
        assert line in out
