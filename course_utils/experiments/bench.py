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
from torch.utils.data import DataLoader, TensorDataset

from ..backbones import body_features, freeze_all, load_backbone, replace_head, split_at, unfreeze_from
from ..cache import cache_boundary, cache_features, peak_rss_mb, reset_peak_rss
from ..device import loader_kwargs, machine_record, pick_device, seed_everything
from ..fashion import FASHION_CLASSES, TensorImages, fashion_mnist_splits, load_fashion_mnist
from ..paths import atomic_write_text, project_root
from ..preprocess import to_backbone_input
from ..timing import Stopwatch, timed
from ..tools.cli import as_typed
from ..training import fit
from .numeric_path import numeric_path

COMMITTED = Path(__file__).resolve().parent / "results" / "bench_cache.json"


def _loader(dataset, batch_size: int, seed: int, device) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        **loader_kwargs(device),
    )


@torch.no_grad()
def bare_forward(model: nn.Module, images: torch.Tensor, batch_size: int, device) -> Stopwatch:
    """Time of the body alone over tensors already in memory (eval, no grad), after one warm-up batch."""
    model.eval().to(device)
    body_features(model, images[:batch_size].to(device))
    with timed() as clock:
        for batch in images.split(batch_size):
            body_features(model, batch.to(device))
    return clock


def _total(watches: list[Stopwatch], attr: str) -> float:
    return sum(getattr(w, attr) for w in watches)


def speed(n: int, size: int, epochs: int, batch_size: int, device, seed: int, root: Path) -> dict:
    """(a) vs (b), extraction throughput vs the bare forward pass, and whether the heads agree.

    The measurements are interleaved -- an epoch of (a), then now and then a cache build and a bare forward pass --
    so that the machine speeding up or slowing down during the run affects both sides alike.
    """
    seed_everything(seed)
    split = fashion_mnist_splits(max(1, n // 10), n_test=1, size=size, seed=seed)["train"]
    images = to_backbone_input(split.images, size)  # the same input tensors for every measurement
    data = TensorDataset(images, split.targets)
    torch.manual_seed(seed)
    initial = nn.Linear(1280, 10).state_dict()

    full = load_backbone("mobilenet_v2")
    replace_head(full, 10, dropout=0.0)
    full.classifier[-1].load_state_dict(initial)
    for name, p in full.named_parameters():
        p.requires_grad = name.startswith("classifier.1.")
    opt_a = torch.optim.SGD([p for p in full.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    loader_a = _loader(data, batch_size, seed, device)  # one loader: its batches follow on as in one 10-epoch fit
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
    feats, labels = cached.tensors()
    head = nn.Linear(1280, 10)
    head.load_state_dict(initial)
    opt_b = torch.optim.SGD(head.parameters(), lr=0.05, momentum=0.9)
    with timed() as clock_head:
        fit(
            head,
            _loader(TensorDataset(feats, labels), batch_size, seed, device),
            opt_b,
            epochs,
            device=device,
            frozen_bn_eval=True,
            progress=False,
        )
    head_a = full.classifier[-1].state_dict()
    n_img = len(data)
    out = {
        "images": n_img,
        "size_px": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "heads_max_abs_difference": float(max((head_a[k] - head.state_dict()[k]).abs().max() for k in head_a)),
    }
    for kind, attr in (("wall", "seconds"), ("cpu", "cpu_seconds")):
        a = _total(epochs_a, attr)
        ex = _total(extract, attr) / len(extract)  # one cache build: the mean of the interleaved builds
        hd = getattr(clock_head, attr)
        extraction_rate = n_img / ex
        bare_rate = n_img / (_total(bare, attr) / len(bare))
        out[kind] = {
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
    return out


def epoch_breakdown(trunk: nn.Module, rest: nn.Module, optimizer: torch.optim.Optimizer, loader, device) -> dict:
    """Seconds one training epoch of Scenario B spends in each part: frozen forward, trainable forward, backward, step.

    The frozen stages run in eval mode without a graph (as with frozen_bn_eval=True); the trainable stages train.
    """
    parts = dict.fromkeys(("frozen_forward", "trainable_forward", "backward", "optimizer_step"), 0.0)
    trunk.eval()
    rest.train()
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        with timed() as t, torch.no_grad():
            boundary = trunk(images)
        parts["frozen_forward"] += t.seconds
        optimizer.zero_grad(set_to_none=True)
        with timed() as t:
            loss = nn.functional.cross_entropy(rest(boundary), labels)
        parts["trainable_forward"] += t.seconds
        with timed() as t:
            loss.backward()
        parts["backward"] += t.seconds
        with timed() as t:
            optimizer.step()
        parts["optimizer_step"] += t.seconds
    return {k: round(v, 4) for k, v in parts.items()}


def boundary_speed(
    n: int,
    size: int,
    epochs: int,
    batch_size: int,
    device,
    seed: int,
    root: Path,
    boundaries: tuple[str, ...] = ("block5", "block6", "block7"),
) -> dict:
    """Scenario B (lesson 04): epochs through the frozen stages vs a boundary cache + epochs from it, one run.

    For the course's B (the first of ``boundaries``) the whole comparison is timed and the trained weights of both
    ways are compared; for every boundary one epoch each way is timed, split into its parts.
    """
    seed_everything(seed)
    split = fashion_mnist_splits(max(1, n // 10), n_test=1, size=size, seed=seed)["train"]
    data = TensorDataset(to_backbone_input(split.images, size), split.targets)

    def b_model(first_trainable: str) -> nn.Module:
        torch.manual_seed(seed)
        model = load_backbone("mobilenet_v2")
        replace_head(model, 10, dropout=0.0)
        freeze_all(model)
        unfreeze_from(model, first_trainable)
        return model

    def sgd(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)

    course_b = boundaries[0]
    through, shortcut = b_model(course_b), b_model(course_b)
    with timed() as clock_cache:
        cached = cache_boundary(
            shortcut,
            data,
            course_b,
            "bench_boundary",
            root=root,
            batch_size=batch_size,
            device=device,
            progress=False,
            verbose=False,
        )
    _, rest = split_at(shortcut, course_b)
    # interleaved, epoch by epoch: (a) through the frozen stages, then (b) from the cache
    loader_a, opt_a = _loader(data, batch_size, seed, device), sgd(through)
    loader_b, opt_b = _loader(TensorDataset(*cached.tensors()), batch_size, seed, device), sgd(shortcut)
    epochs_a, epochs_b = [], []
    for _ in range(epochs):
        with timed() as clock:
            fit(through, loader_a, opt_a, 1, device=device, frozen_bn_eval=True, progress=False)
        epochs_a.append(clock)
        with timed() as clock:
            fit(rest, loader_b, opt_b, 1, device=device, frozen_bn_eval=True, progress=False)
        epochs_b.append(clock)
    weights_a, weights_b = through.state_dict(), shortcut.state_dict()
    out = {
        "images": len(data),
        "size_px": size,
        "epochs": epochs,
        "batch_size": batch_size,
        "first_trainable": course_b,
        "boundary_shape": list(cached.features.shape[1:]),
        "weights_max_abs_difference": float(
            max((weights_a[k].float() - weights_b[k].float()).abs().max() for k in weights_a)
        ),
    }
    for kind, attr in (("wall", "seconds"), ("cpu", "cpu_seconds")):
        a, b = _total(epochs_a, attr), _total(epochs_b, attr)
        out[kind] = {
            "a_through_frozen_stages_s": round(a, 3),
            "b_cache_build_s": round(getattr(clock_cache, attr), 3),
            "b_epochs_from_cache_s": round(b, 3),
            "speedup_total": round(a / (getattr(clock_cache, attr) + b), 2),
            "speedup_per_epoch": round(a / b, 2),
        }
    per_boundary = {}
    for first_trainable in boundaries:  # one epoch each way, split into parts
        model = b_model(first_trainable)
        trunk, rest = split_at(model, first_trainable)
        loader = _loader(data, batch_size, seed, device)
        parts = epoch_breakdown(trunk, rest, sgd(model), loader, device)
        with torch.no_grad():
            boundary = trunk.eval()(data.tensors[0][:1])
        through_s = sum(parts.values())
        from_cache_s = through_s - parts["frozen_forward"]
        per_boundary[first_trainable] = {
            "channels": int(boundary.shape[1]),
            "epoch_parts_s": parts,
            "epoch_through_frozen_s": round(through_s, 3),
            "epoch_from_cache_s": round(from_cache_s, 3),
            "speedup_per_epoch": round(through_s / from_cache_s, 2),
        }
    out["per_boundary"] = per_boundary
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="course bench",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    args = parser.parse_args(argv)
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
        merged = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
        section = {k: report[k] for k in ("command", "date", "machine")}
        merged["numeric_path"] = {**report["numeric_path"], "measured_by": section}
        atomic_write_text(out, json.dumps(merged, indent=1) + "\n")
        print(f"updated the numeric_path section of {out}")
        return 0
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
    # One torch thread on the CPU: CPU time is this process's work alone (a shared machine's waits excluded).
    basis = "cpu" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall"
    s, b = report["speed"][basis], report["boundary"][basis]
    report["goals"] = {
        "judged_on": f"{basis} time",
        "speedup_total_at_least_9": s["speedup_total"] >= 9,
        "extraction_vs_bare_forward_at_least_0.9": s["extraction_vs_bare_forward"] >= 0.9,
        "boundary_speedup_total_at_least_1.3": b["speedup_total"] >= 1.3,
    }
    atomic_write_text(out, json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["goals"]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
