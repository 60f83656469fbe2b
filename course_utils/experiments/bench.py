"""Benchmark of lessons 03 and 04: what the feature cache (Scenario A) and the boundary cache (Scenario B) save.

    course bench [--n 2000] [--size 64] [--epochs 10] [--threads N] [--memory-n 60000] [--out FILE]
    make bench ARGS="--threads 1"

Measured side by side in one run, on the same tensors and device:

Scenario A (lesson 03): (a) ``epochs`` epochs of head training that run the frozen body on every batch (PyTorch
tutorial style) vs (b) one cache build (``course_utils.cache.cache_features``) plus ``epochs`` epochs from the
cache; extraction throughput (hashing and writing included; two builds, averaged) vs the bare body's forward pass
on the same tensors (three runs around the builds, averaged); the largest difference between the two heads.

Scenario B (lesson 04): ``epochs`` epochs that run the frozen stages (up to block5) on every batch vs one boundary
cache build (``cache_boundary``) plus ``epochs`` epochs of the trainable stages from it; the largest difference
between the two trained models; and for boundaries before block5, block6 and block7, one epoch split into frozen
forward, trainable forward, backward and optimizer step, which explains why B's cache saves far less than A's.

Both comparisons are interleaved (an epoch one way, then a cache build or an epoch the other way, and so on), so that
the machine speeding up or slowing down during the run -- this one varies a lot -- affects both sides alike.

Memory: peak RSS growth while caching ``--memory-n`` Fashion-MNIST training images and a tenth of them.

Numeric path (the sweep's): a training step NCHW vs channels_last, whole network and from later stages; evaluation
at batch 256 vs 64; the largest logit difference (course_utils.experiments.numeric_path).

The figures go to build/bench_cache.json (``--out course_utils/experiments/results/bench_cache.json`` updates the
committed ones) with the command and machine that made them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ..backbones import body_features, load_backbone, replace_head
from ..cache import cache_features, peak_rss_mb, reset_peak_rss
from ..device import machine_record, pick_device
from ..fashion import FASHION_CLASSES, TensorImages, load_fashion_mnist
from ..paths import atomic_write_text, project_root
from ..timing import Stopwatch, timed
from ..tools.cli import as_typed, doc_parser
from ..training import fit
from .bench_boundary import TIME_KINDS, bench_data, boundary_speed, seeded_loader, total
from .numeric_path import numeric_path

COMMITTED = Path(__file__).resolve().parent / "results" / "bench_cache.json"


@torch.no_grad()
def bare_forward(model: nn.Module, images: torch.Tensor, batch_size: int, device) -> Stopwatch:
    """Time of the body alone over tensors already in memory (eval, no grad), after one warm-up batch."""
    model.eval().to(device)
    body_features(model, images[:batch_size].to(device))
    with timed() as clock:
        for batch in images.split(batch_size):
            body_features(model, batch.to(device))
    return clock


def _tutorial_model(initial: dict) -> nn.Module:
    """(a)'s model: the whole MobileNetV2 with the 10-class head ``initial``, only that head's last layer trainable."""
    full = load_backbone("mobilenet_v2")
    replace_head(full, 10, dropout=0.0)
    full.classifier[-1].load_state_dict(initial)
    for name, p in full.named_parameters():
        p.requires_grad = name.startswith("classifier.1.")
    return full


def _interleaved_a(full: nn.Module, data: TensorDataset, epochs: int, batch_size: int, device, seed: int, root: Path):
    """(a)'s epochs, with three cache builds and bare forward passes spread among them: the stopwatches and a cache."""
    images = data.tensors[0]  # the same input tensors for every measurement
    opt_a = torch.optim.SGD([p for p in full.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    loader_a = seeded_loader(data, batch_size, seed, device)  # one loader: its batches follow on as in one 10-epoch fit
    body = load_backbone("mobilenet_v2").eval()
    epochs_a, extract, bare = [], [], []
    builds_after = sorted({0, epochs // 2, epochs - 1})  # three cache builds, spread over the run
    for epoch in range(epochs):
        with timed() as clock:
            fit(full, loader_a, opt_a, 1, device=device, frozen_bn_eval=True, progress=False)
        epochs_a.append(clock)
        if epoch in builds_after:
            with timed() as clock:
                cached = cache_features(
                    body,
                    data,
                    f"bench{epoch}",
                    root=root,
                    batch_size=batch_size,
                    device=device,
                    progress=False,
                    verbose=False,
                )
            extract.append(clock)
            bare.append(bare_forward(body, images, batch_size, device))
    return epochs_a, extract, bare, cached


def _cached_head(cached, initial: dict, epochs: int, batch_size: int, device, seed: int):
    """(b)'s head epochs from the cache, from the same initial head as (a): the head and their stopwatch."""
    feats, labels = cached.tensors()
    head = nn.Linear(1280, 10)
    head.load_state_dict(initial)
    opt_b = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    with timed() as clock_head:
        fit(
            head,
            seeded_loader(TensorDataset(feats, labels), batch_size, seed, device),
            opt_b,
            epochs,
            device=device,
            frozen_bn_eval=True,
            progress=False,
        )
    return head, clock_head


def _speed_times(n_img: int, epochs_a, extract, bare, clock_head: Stopwatch, attr: str) -> dict:
    """Scenario A's figures in one reading of the stopwatches (``seconds`` or ``cpu_seconds``)."""
    a = total(epochs_a, attr)
    ex = total(extract, attr) / len(extract)  # one cache build: the mean of the interleaved builds
    hd = getattr(clock_head, attr)
    extraction_rate = n_img / ex
    bare_rate = n_img / (total(bare, attr) / len(bare))
    return {
        "a_through_body_s": round(a, 3),
        "a_epoch_s_runs": [round(getattr(c, attr), 3) for c in epochs_a],
        "b_extract_s": round(ex, 3),
        "b_head_epochs_s": round(hd, 4),
        "b_total_s": round(ex + hd, 3),
        "speedup_total": round(a / (ex + hd), 2),
        "extraction_images_per_s": round(extraction_rate, 1),
        "extraction_images_per_s_runs": [round(n_img / getattr(c, attr), 1) for c in extract],
        "bare_forward_images_per_s": round(bare_rate, 1),
        "bare_forward_images_per_s_runs": [round(n_img / getattr(c, attr), 1) for c in bare],
        "extraction_vs_bare_forward": round(extraction_rate / bare_rate, 3),
    }


def speed(n: int, size: int, epochs: int, batch_size: int, device, seed: int, root: Path) -> dict:
    """(a) vs (b), extraction throughput vs the bare forward pass, and whether the heads agree.

    The measurements are interleaved -- an epoch of (a), then now and then a cache build and a bare forward pass --
    so that the machine speeding up or slowing down during the run affects both sides alike.
    """
    data = bench_data(n, size, seed)
    torch.manual_seed(seed)
    initial = nn.Linear(1280, 10).state_dict()
    full = _tutorial_model(initial)
    epochs_a, extract, bare, cached = _interleaved_a(full, data, epochs, batch_size, device, seed, root)
    head, clock_head = _cached_head(cached, initial, epochs, batch_size, device, seed)
    head_a = full.classifier[-1].state_dict()
    n_img = len(data)
    out = {
        "images": n_img,
        "size_px": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "heads_max_abs_difference": float(max((head_a[k] - head.state_dict()[k]).abs().max() for k in head_a)),
    }
    for kind, attr in TIME_KINDS:
        out[kind] = _speed_times(n_img, epochs_a, extract, bare, clock_head, attr)
    return out


def memory(n_all: int, size: int, batch_size: int, device, root: Path) -> dict:
    """Peak RSS growth while caching n_all/10 and n_all Fashion-MNIST training images (one process, reset between)."""
    body = load_backbone("mobilenet_v2").eval()
    images, labels = load_fashion_mnist(True)
    out = {"size_px": size}
    for n in (max(1, n_all // 10), n_all):
        data = TensorImages(images[:n], labels[:n], list(FASHION_CLASSES), size=size)
        reset_peak_rss()
        before = peak_rss_mb()
        start = time.perf_counter()
        result = cache_features(
            body, data, f"memory{n}", root=root, batch_size=batch_size, device=device, progress=False, verbose=False
        )
        out[str(n)] = {
            "peak_rss_growth_mb": round(peak_rss_mb() - before, 1),
            "features_mb": round(result.features.nbytes / 2**20, 1),
            "seconds": round(time.perf_counter() - start, 1),
        }
        del result
    return out


def _parser() -> argparse.ArgumentParser:
    parser = doc_parser("course bench", __doc__)
    parser.add_argument("--n", type=int, default=2000, help="images for the speed comparison")
    parser.add_argument("--size", type=int, default=64, help="pixels")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--memory-n", type=int, default=60000, help="images cached for the memory figure (0: skip)")
    parser.add_argument("--memory-size", type=int, default=32, help="pixels for the memory run")
    parser.add_argument("--eval-n", type=int, default=1024, help="images for the numeric path's evaluation timing")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        choices=["numeric-path"],
        default=None,
        help="run one section and update it in --out, keeping that file's other sections",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where the figures go (default build/bench_cache.json; --out {COMMITTED.relative_to(project_root())} "
        "updates the committed figures)",
    )
    return parser


def _update_numeric_path(out: Path, report: dict) -> None:
    """Replace the numeric_path section of ``out`` (keeping its other sections) with the one just measured."""
    merged = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    section = {k: report[k] for k in ("command", "date", "machine")}
    merged["numeric_path"] = {**report["numeric_path"], "measured_by": section}
    atomic_write_text(out, json.dumps(merged, indent=1) + "\n")
    print(f"updated the numeric_path section of {out}")


def _measure_caches(args: argparse.Namespace, device, report: dict) -> None:
    """Scenario A, Scenario B and (unless --memory-n 0) the memory figure, each into its section of ``report``."""
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        print(f"speed: {args.n} images at {args.size} px, {args.epochs} epochs, on {device} ...", flush=True)
        report["speed"] = speed(args.n, args.size, args.epochs, args.batch_size, device, args.seed, Path(tmp))
        print(json.dumps(report["speed"], indent=1), flush=True)
        print(f"boundary cache (Scenario B): {args.n} images at {args.size} px, {args.epochs} epochs ...", flush=True)
        report["boundary"] = boundary_speed(
            args.n, args.size, args.epochs, args.batch_size, device, args.seed, Path(tmp)
        )
        print(json.dumps(report["boundary"], indent=1), flush=True)
        if args.memory_n:
            print(
                f"memory: caching {args.memory_n // 10} and {args.memory_n} images at {args.memory_size} px ...",
                flush=True,
            )
            report["memory"] = memory(args.memory_n, args.memory_size, args.batch_size, device, Path(tmp))
            print(json.dumps(report["memory"], indent=1), flush=True)


def _goals(report: dict, device) -> dict:
    """Whether the measured figures meet the course's goals, judged on CPU time when that is this process's alone."""
    # One torch thread on the CPU: CPU time is this process's work alone (a shared machine's waits excluded).
    basis = "cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    s, b = report["speed"][basis], report["boundary"][basis]
    return {
        "judged_on": f"{basis} time",
        "speedup_total_at_least_9": s["speedup_total"] >= 9,
        "extraction_vs_bare_forward_at_least_0.9": s["extraction_vs_bare_forward"] >= 0.9,
        "boundary_speedup_total_at_least_1.3": b["speedup_total"] >= 1.3,
    }


def main(argv: list[str] | None = None) -> int:
    """`course bench`: measure, then write the figures with the command and machine that made them."""
    args = _parser().parse_args(argv)
    out = args.out or project_root() / "build" / "bench_cache.json"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    report = {
        "command": as_typed("bench", argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_record(),
    }
    if device.type == "cpu":
        print(f"numeric path: NCHW vs channels_last at {args.size} px, interleaved ...", flush=True)
        report["numeric_path"] = numeric_path(args.size, args.batch_size, eval_n=args.eval_n)
        print(json.dumps(report["numeric_path"], indent=1), flush=True)
    if args.only == "numeric-path":
        _update_numeric_path(out, report)
        return 0
    _measure_caches(args, device, report)
    report["goals"] = _goals(report, device)
    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["goals"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
