"""`course bench`'s "numeric path" section: the same arithmetic laid out two ways, measured interleaved.

The sweep runs every contender on one numeric path (``SweepConfig.channels_last`` and ``eval_batch_size``). This
measures what that path buys, on the same model, inputs and device, alternating the two ways so that the machine
speeding up or slowing down affects both alike:

- a training step (forward, backward, Adam step) of the whole network and of the trainable part after a few
  boundaries (block2 ... block7), NCHW vs ``channels_last`` (model and inputs);
- evaluation of the whole network at batch 256 vs 64, and NCHW vs ``channels_last``;
- the largest difference between the two layouts' logits (the numbers are not bit for bit equal, so the sweep's
  results files say which path they used, one path per file).
"""

from __future__ import annotations

import copy
import statistics

import torch
from torch import nn

from ..backbones import freeze_all, load_backbone, replace_head, split_at, unfreeze_from
from ..timing import timed

BOUNDARIES = ("stem", "block2", "block4", "block5", "block7")  # "stem": the whole network trains (Scenario C)


def _layout(model: nn.Module, x: torch.Tensor, channels_last: bool) -> tuple[nn.Module, torch.Tensor]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(memory_format=fmt), x.contiguous(memory_format=fmt)


def _train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    with timed() as clock:
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            optimizer.step()
    return clock.cpu_seconds if torch.get_num_threads() == 1 else clock.seconds


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, batch_size: int, channels_last: bool) -> float:
    model.eval()
    with timed() as clock:
        for start in range(0, len(x), batch_size):
            model(_layout(model, x[start : start + batch_size], channels_last)[1])
    return clock.cpu_seconds if torch.get_num_threads() == 1 else clock.seconds


def numeric_path(
    size: int = 64,
    batch_size: int = 64,
    steps: int = 6,
    rounds: int = 3,
    eval_n: int = 1024,
    boundaries: tuple[str, ...] = BOUNDARIES,
) -> dict:
    """Training-step and evaluation times per image, NCHW vs channels_last (and eval batch 256 vs 64), interleaved."""
    torch.manual_seed(0)
    x = torch.randn(batch_size, 3, size, size)
    y = torch.randint(0, 10, (batch_size,))
    pretrained = load_backbone("mobilenet_v2", fetch=False)
    replace_head(pretrained, 10, dropout=0.0)
    train = {}
    for boundary in boundaries:
        model = copy.deepcopy(pretrained)
        freeze_all(model)
        unfreeze_from(model, boundary)
        trunk, rest = split_at(model, boundary)
        with torch.no_grad():
            inputs = trunk.eval()(x)
        times: dict[str, list[float]] = {"nchw": [], "channels_last": []}
        for _ in range(rounds):
            for way in times:
                net, batch = _layout(copy.deepcopy(rest), inputs, way == "channels_last")
                _train_steps(net, batch, y, 1)  # warm-up step, not timed
                times[way].append(_train_steps(net, batch, y, steps) / (steps * batch_size) * 1000)
        nchw, last = statistics.median(times["nchw"]), statistics.median(times["channels_last"])
        train[boundary] = {
            "ms_per_image_nchw": round(nchw, 3),
            "ms_per_image_channels_last": round(last, 3),
            "speedup": round(nchw / last, 2),
        }
    images = torch.randn(eval_n, 3, size, size)
    model = copy.deepcopy(pretrained).eval()
    ways = {"nchw_256": (256, False), "nchw_64": (64, False), "channels_last_64": (64, True)}
    evals: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(rounds):
        for way, (bs, cl) in ways.items():
            evals[way].append(_evaluate(_layout(model, images[:64], cl)[0], images, bs, cl) / eval_n * 1000)
    ms = {way: statistics.median(v) for way, v in evals.items()}
    with torch.no_grad():
        reference = _layout(copy.deepcopy(pretrained).eval(), images[:256], False)
        fast = _layout(copy.deepcopy(pretrained).eval(), images[:256], True)
        difference = (reference[0](reference[1]) - fast[0](fast[1])).abs().max().item()
    return {
        "size_px": size,
        "batch_size": batch_size,
        "timed_on": "cpu time" if torch.get_num_threads() == 1 else "wall time",
        "train_step_by_first_trainable_stage": train,
        "evaluate_ms_per_image": {way: round(v, 3) for way, v in ms.items()},
        "evaluate_speedup_batch_64_vs_256": round(ms["nchw_256"] / ms["nchw_64"], 2),
        "evaluate_speedup_channels_last_64_vs_nchw_256": round(ms["nchw_256"] / ms["channels_last_64"], 2),
        "logits_max_abs_difference": float(difference),
    }
