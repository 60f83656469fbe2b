"""The feature cache: fingerprint, invalidation, atomic writes, corruption, flat memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import course
from torch import nn

from course_utils import cache, fashion, preprocess
from course_utils.fashion import TensorImages
from course_utils.preprocess import IMAGENET_MEAN, IMAGENET_STD

ROOT = Path(__file__).resolve().parents[1]


def tiny_body(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
    )


def call(model, x):
    return model(x)


def images(n: int = 40, seed: int = 0) -> TensorImages:
    generator = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)
    return TensorImages(imgs, torch.arange(n) % 3, ["a", "b", "c"], size=16)


def make(tmp_path, model=None, data=None, **kwargs):
    return cache.cache_features(
        model or tiny_body(),
        data or images(),
        "demo",
        root=tmp_path,
        batch_size=16,
        feature_fn=call,
        progress=False,
        verbose=False,
        **kwargs,
    )


def test_cached_features_equal_the_body_output_in_order(tmp_path):
    model, data = tiny_body(), images()
    result = make(tmp_path, model, data)
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        expected = model.eval()(x)
    assert result.built and result.features.shape == (40, 32)
    assert isinstance(result.features, np.memmap)
    torch.testing.assert_close(torch.from_numpy(np.array(result.features)), expected)
    assert np.array_equal(result.labels, data.targets.numpy())


def test_second_call_loads_without_running_the_body(tmp_path):
    first = make(tmp_path)
    calls = []
    second = cache.cache_features(
        tiny_body(),
        images(),
        "demo",
        root=tmp_path,
        feature_fn=lambda m, x: calls.append(1) or m(x),
        progress=False,
        verbose=False,
    )
    assert not second.built and second.reason == "loaded from cache" and calls == []
    assert second.fingerprint == first.fingerprint


@pytest.mark.parametrize(
    "change, part",
    [
        (lambda: dict(model=tiny_body(seed=1)), "weights"),
        (lambda: dict(data=TensorImages(images().images, images().targets, ["a", "b", "c"], size=20)), "transform"),
        (lambda: dict(data=images(seed=1)), "data"),
    ],
)
def test_changing_weights_transform_or_data_rebuilds_and_says_why(tmp_path, change, part):
    first = make(tmp_path)
    second = make(tmp_path, **change())
    assert second.built and second.fingerprint != first.fingerprint
    assert second.reason == f"rebuilt: {part} changed"


def antialiased(images: torch.Tensor, size: int) -> torch.Tensor:
    """preprocess.to_backbone_input with one change: antialiasing when it shrinks (28 -> 16 px here)."""
    x = images.float().div(255.0).unsqueeze(1)
    x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


def test_a_change_to_the_preprocessing_code_rebuilds_the_cache(tmp_path, monkeypatch):
    make(tmp_path)
    monkeypatch.setattr(fashion, "to_backbone_input", antialiased)  # what TensorImages calls, edited
    data = images()
    assert not torch.equal(antialiased(data.images[:1], 16), preprocess.to_backbone_input(data.images[:1], 16))
    second = make(tmp_path, data=data)
    assert second.built and second.reason == "rebuilt: transform changed"
    x = torch.stack([data[i][0] for i in range(len(data))])
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(np.array(second.features)), tiny_body().eval()(x))
    monkeypatch.undo()
    assert make(tmp_path).reason == "loaded from cache"


def test_a_dataset_with_its_own_transform_gets_its_own_cache(tmp_path):
    class Antialiased(TensorImages):
        def transform(self, images: torch.Tensor) -> torch.Tensor:
            return antialiased(images, self.size)

    make(tmp_path)
    plain = images()
    antialiased_data = Antialiased(plain.images, plain.targets, plain.classes, size=16)
    other = make(tmp_path, data=antialiased_data)
    assert other.built and other.reason == "rebuilt: transform changed"
    output_digest = lambda data: data.transform_description().split("sha256=")[1]  # noqa: E731
    assert output_digest(antialiased_data) != output_digest(plain)  # the output tells them apart, not the name


def test_batchnorm_statistics_are_part_of_the_weights_fingerprint():
    model = tiny_body()
    before = cache.weights_digest(model)
    model.train()(torch.randn(4, 3, 8, 8))  # moves running_mean only; no parameter changes
    assert cache.weights_digest(model) != before


def test_the_reason_names_only_what_differs_from_the_closest_cache(tmp_path):
    make(tmp_path)
    make(tmp_path, data=TensorImages(images().images, images().targets, ["a", "b", "c"], size=20))
    assert make(tmp_path, model=tiny_body(seed=1)).reason == "rebuilt: weights changed"


def test_library_versions_are_part_of_the_fingerprint(tmp_path, monkeypatch):
    first = make(tmp_path)
    monkeypatch.setattr(cache, "library_versions", lambda: "torch=9.9 torchvision=9.9")
    second = make(tmp_path)
    assert second.built and second.reason == "rebuilt: versions changed" and second.fingerprint != first.fingerprint


def test_labels_are_part_of_the_data_fingerprint():
    a, b = images(), images()
    b.targets = (b.targets + 1) % 3
    assert cache.dataset_digest(a) != cache.dataset_digest(b)


def test_image_folder_fingerprint_follows_file_changes(tmp_path):
    from PIL import Image
    from torchvision.datasets import ImageFolder

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / cls / "1.png")
    before = cache.dataset_digest(ImageFolder(str(tmp_path)))
    Image.new("RGB", (9, 9), (10, 20, 30)).save(tmp_path / "a" / "1.png")
    assert cache.dataset_digest(ImageFolder(str(tmp_path))) != before


def test_a_failed_write_leaves_no_cache_and_no_temporary_files(tmp_path):
    seen = []

    def broken(model, x):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt("interrupted half-way")
        return model(x)

    with pytest.raises(KeyboardInterrupt):
        cache.cache_features(
            tiny_body(),
            images(),
            "demo",
            root=tmp_path,
            batch_size=16,
            feature_fn=broken,
            progress=False,
            verbose=False,
        )
    assert list((tmp_path / "demo").iterdir()) == []
    result = make(tmp_path)
    assert result.built and result.reason == "built: no cache yet"


def test_half_written_cache_without_manifest_is_rebuilt(tmp_path):
    first = make(tmp_path)
    (first.path / "manifest.json").unlink()
    second = make(tmp_path)
    assert second.built and "incomplete" in second.reason
    assert np.array_equal(np.array(second.features), np.array(first.features))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_features_are_detected_and_rebuilt(tmp_path, damage):
    first = make(tmp_path)
    good = np.array(first.features)
    path = first.path / "features.npy"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        raw[-5] ^= 0xFF
        path.write_bytes(bytes(raw))
    assert cache.check_cache_folder(first.path) != ""
    second = make(tmp_path)
    assert second.built and "corrupt" in second.reason
    assert np.array_equal(np.array(second.features), good)


def test_manifest_records_fingerprint_parts_and_shape(tmp_path):
    result = make(tmp_path)
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["fingerprint"] == result.fingerprint and manifest["shape"] == [40, 32]
    assert set(manifest["parts"]) == set(cache.PARTS)


def test_random_augmentation_is_refused_with_a_clear_message(tmp_path):
    data = images()
    data.augment = lambda x: x.flip(-1) if torch.rand(()) < 0.5 else x
    with pytest.raises(cache.CacheError, match="random augmentation"):
        make(tmp_path, data=data)


def test_old_caches_are_pruned(tmp_path):
    for seed in range(6):
        make(tmp_path, model=tiny_body(seed))
    assert len(list((tmp_path / "demo").iterdir())) == 4  # the current one and keep_old=3 others


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="resetting peak RSS needs Linux's /proc/self/clear_refs"
)
@pytest.mark.slow  # caches 40,000 images
def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """Cache 5,000 then 40,000 images (20 MB vs 160 MB of features) in a fresh process; compare peak RSS growth."""
    script = textwrap.dedent(f"""
        import torch
        from torch import nn
        from torch.utils.data import TensorDataset
        from course_utils import cache
        torch.set_num_threads(1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(48, 1024))  # 4 KB of features per image
        for n in (5_000, 40_000):
            x = torch.zeros(n, 3, 4, 4)
            x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
            data = TensorDataset(x, torch.zeros(n, dtype=torch.long))
            cache.weights_digest(model); cache.dataset_digest(data)
            assert cache.reset_peak_rss()
            before = cache.peak_rss_mb()
            result = cache.cache_features(model, data, f"mem{{n}}", root={str(tmp_path)!r}, batch_size=500,
                                          feature_fn=lambda m, b: m(b), progress=False, verbose=False)
            assert result.features.shape == (n, 1024)
            print(n, cache.peak_rss_mb() - before)
            del result, data, x
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    growth = {int(n): float(mb) for n, mb in (line.split() for line in out.stdout.split("\n") if line.strip())}
    large_features_mb = 40_000 * 1024 * 4 / 2**20
    assert growth[40_000] < growth[5_000] + 0.2 * large_features_mb, growth


@pytest.mark.slow  # a real `course bench` run
def test_bench_writes_its_figures_and_the_command(tmp_path):
    """A tiny run of `course bench`: every figure is there and consistent (no timing goal is judged here)."""
    out = tmp_path / "bench.json"
    args = [
        "--n",
        "20",
        "--size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--memory-n",
        "40",
        "--threads",
        "1",
        "--eval-n",
        "64",
        "--out",
        str(out),
    ]
    run = course("bench", *args)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["command"] == "course bench " + " ".join(args) and report["machine"]["torch_threads"] == 1
    assert report["speed"]["images"] == 20 and report["speed"]["heads_max_abs_difference"] < 1e-3
    for kind in ("wall", "cpu"):
        figures = report["speed"][kind]
        assert figures["b_total_s"] == pytest.approx(figures["b_extract_s"] + figures["b_head_epochs_s"], abs=2e-3)
        assert figures["speedup_total"] == pytest.approx(figures["a_through_body_s"] / figures["b_total_s"], rel=0.02)
    boundary = report["boundary"]
    assert boundary["first_trainable"] == "block5" and boundary["boundary_shape"] == [64, 2, 2]  # block4 output
    assert boundary["weights_max_abs_difference"] < 1e-4  # training from the cache changes only the time
    for kind in ("wall", "cpu"):
        b = boundary[kind]
        total = b["b_cache_build_s"] + b["b_epochs_from_cache_s"]
        assert b["speedup_total"] == pytest.approx(b["a_through_frozen_stages_s"] / total, rel=0.02)
    assert [row["channels"] for row in boundary["per_boundary"].values()] == [64, 96, 160]
    for row in boundary["per_boundary"].values():
        parts = row["epoch_parts_s"]
        assert row["epoch_through_frozen_s"] == pytest.approx(sum(parts.values()), abs=2e-3)
        assert row["epoch_from_cache_s"] == pytest.approx(sum(parts.values()) - parts["frozen_forward"], abs=2e-3)
    assert set(report["memory"]) == {"size_px", "4", "40"} and report["goals"]["judged_on"] == "cpu time"
    assert set(report["goals"]) >= {"speedup_total_at_least_9", "boundary_speedup_total_at_least_1.3"}


@pytest.mark.slow  # a real `course bench` run
def test_bench_without_out_never_touches_the_committed_figures():
    """Running a tool must not dirty the checkout: without --out the figures go to build/, not to the results."""
    committed = ROOT / "course_utils" / "experiments" / "results" / "bench_cache.json"
    before = committed.read_bytes()
    default = ROOT / "build" / "bench_cache.json"
    default.unlink(missing_ok=True)
    args = ["--n", "16", "--size", "32", "--epochs", "1", "--batch-size", "8", "--memory-n", "16", "--threads", "1"]
    args += ["--eval-n", "64"]  # the numeric path's evaluation on 64 images, not 1024: the figures, not the speed
    try:
        run = course("bench", *args)
        assert run.returncode == 0, run.stderr[-2000:]
        assert committed.read_bytes() == before
    finally:
        committed.write_bytes(before)  # even when the bench is broken, leave the checkout as it was
    assert json.loads(default.read_text())["command"] == "course bench " + " ".join(args)
