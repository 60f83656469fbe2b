"""What a channel responds to: the image patches that activate it most (Zeiler & Fergus, 2014).

For one channel of one stage, run a pool of real images through the network, find where in each image the
channel is largest, and cut out the part of the image that position can see (its receptive field). The k
images with the largest values give the channel's top-k patches. Lesson 01 shows them for an early, a middle
and a late stage, ImageNet weights beside random ones.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .explore import stage_output_modules
from .fashion import FASHION_CLASSES
from .photos import photo_crops
from .preprocess import to_backbone_input


@dataclass(frozen=True)
class ReceptiveField:
    """What one position of a stage's output sees: a ``size`` x ``size`` square of input pixels, centred on
    input pixel ``offset + stride * i`` for output position i (the same along both axes)."""

    size: int
    stride: int
    offset: float


def _layers_until(model: nn.Module, stage: str) -> list[nn.Module]:
    """The convolutions and poolings on the main path of ``model``, in forward order, up to the end of ``stage``.

    A residual shortcut (resnet's ``downsample``) is parallel to the main path and is left out."""
    outputs = stage_output_modules(model)
    if stage not in outputs:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(outputs)}")
    last = set(map(id, outputs[stage].modules()))
    layers, inside = [], False
    for name, module in model.named_modules():
        if id(module) in last:
            inside = True
        elif inside:
            break  # left the stage's last module: everything after it is later in the network
        if "downsample" in name.split("."):
            continue
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            layers.append(module)
    return layers


def receptive_field(model: nn.Module, stage: str) -> ReceptiveField:
    """The theoretical receptive field of one output position of ``stage``, computed from the layers' kernel
    sizes, strides, paddings and dilations (each layer widens it by (kernel - 1) x the stride so far)."""
    size, stride, offset = 1, 1, 0.0
    for layer in _layers_until(model, stage):
        kernel, step, pad, dilation = (
            _pair(layer.kernel_size),
            _pair(layer.stride),
            _pair(layer.padding),
            _pair(getattr(layer, "dilation", 1)),
        )
        span = dilation * (kernel - 1) + 1
        size += (span - 1) * stride
        offset += ((span - 1) / 2 - pad) * stride
        stride *= step
    return ReceptiveField(size, stride, offset)


def _pair(value) -> int:
    """A square layer's kernel size, stride, padding or dilation as one int."""
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"only square layers are supported, got {value}")
        return int(value[0])
    return int(value)


class _Stop(Exception):
    """Raised by the hook once the stage's output is captured: later stages need not run."""


@torch.no_grad()
def stage_activations(model: nn.Module, stage: str, images: torch.Tensor, batch_size: int = 16):
    """For each image and channel of ``stage``: the largest activation and where it is (row, column of the
    stage's output). Returns (values N x C, rows N x C, columns N x C). Runs the network only up to the stage.

    Small batches by default: on a CPU, batches of 64 spent more time allocating memory than computing."""
    module = stage_output_modules(model)[stage]
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output.detach())
        raise _Stop

    model.eval()
    device = next(model.parameters()).device
    values, rows, cols = [], [], []
    handle = module.register_forward_hook(hook)
    try:
        for start in range(0, len(images), batch_size):
            captured.clear()
            with contextlib.suppress(_Stop):
                model(images[start : start + batch_size].to(device))
            maps = captured[0].float().cpu()  # B x C x H x W
            best, where = maps.flatten(2).max(dim=2)
            values.append(best)
            rows.append(torch.div(where, maps.shape[3], rounding_mode="floor"))
            cols.append(where % maps.shape[3])
    finally:
        handle.remove()
    return torch.cat(values), torch.cat(rows), torch.cat(cols)


def crop_window(center: float, size: int, length: int) -> tuple[int, int]:
    """(start, stop) of a ``size``-pixel window centred on ``center``, moved inside [0, length) if it sticks out
    (and cut to the image if it is larger than the image)."""
    size = min(size, length)
    start = int(round(center - (size - 1) / 2))
    start = max(0, min(start, length - size))
    return start, start + size


@torch.no_grad()
def top_patches(
    model: nn.Module,
    stage: str,
    channels: list[int],
    images: torch.Tensor,
    k: int = 6,
    batch_size: int = 16,
) -> dict:
    """The ``k`` image patches that activate each of ``channels`` of ``stage`` most, one per image.

    ``images`` are backbone input (N x 3 x S x S, normalized). For each channel the k images with the largest
    maximal activation are kept, and from each the receptive field of the maximal position is cut out (inside
    the image: a late stage's field is larger than the image, so its patch is the whole image).

    Returns a dict: ``patches`` (channels x k x 3 x p x p), ``scores`` (channels x k, the activations),
    ``images`` (channels x k, index into ``images``), ``field`` (the ReceptiveField), ``patch_size`` p, and
    ``stage`` and ``channels`` as given, and ``every_channel``: the top-k image indices of *every* channel of the
    stage (channels x k, as top_images gives, without another pass), for statistics over the whole stage.
    """
    field = receptive_field(model, stage)
    values, rows, cols = stage_activations(model, stage, images, batch_size)
    n_channels = values.shape[1]
    bad = [c for c in channels if not 0 <= c < n_channels]
    if bad:
        raise ValueError(f"{stage} has {n_channels} channels; no channel {bad}")
    if not 1 <= k <= len(images):
        raise ValueError(f"k={k} patches need at least k images; the pool has {len(images)}")
    height, width = images.shape[2], images.shape[3]
    p = min(field.size, height, width)
    patches = torch.empty(len(channels), k, images.shape[1], p, p)
    scores = torch.empty(len(channels), k)
    chosen = torch.empty(len(channels), k, dtype=torch.long)
    for i, channel in enumerate(channels):
        best = values[:, channel].topk(k)
        scores[i], chosen[i] = best.values, best.indices
        for j, n in enumerate(best.indices.tolist()):
            r0, r1 = crop_window(field.offset + field.stride * rows[n, channel].item(), p, height)
            c0, c1 = crop_window(field.offset + field.stride * cols[n, channel].item(), p, width)
            patches[i, j] = images[n, :, r0:r1, c0:c1]
    return {
        "stage": stage,
        "channels": list(channels),
        "every_channel": values.topk(k, dim=0).indices.T,
        "patches": patches,
        "scores": scores,
        "images": chosen,
        "field": field,
        "patch_size": p,
    }


def top_images(model: nn.Module, stage: str, images: torch.Tensor, k: int = 6, batch_size: int = 16) -> torch.Tensor:
    """For every channel of ``stage``, the indices (channels x k) of the k images that activate it most."""
    values, _, _ = stage_activations(model, stage, images, batch_size)
    return values.topk(k, dim=0).indices.T


def image_pool(
    photos: dict,
    crops_per_photo: int,
    fashion_images: torch.Tensor,
    fashion_labels: torch.Tensor,
    size: int = 96,
    seed: int = 0,
) -> tuple[torch.Tensor, list[str]]:
    """A pool of real images as backbone input: random crops of each photo (course_utils.photos.photo_crops)
    and grey Fashion-MNIST images (uint8 N x 28 x 28) enlarged to ``size``. Returns (images, where each came
    from: the photo's name, or 'fashion: ' and the garment's class)."""
    crops, source, names = photo_crops(photos, crops_per_photo, size, seed=seed)
    fashion = to_backbone_input(fashion_images, size)
    origin = [names[i] for i in source.tolist()] + [f"fashion: {FASHION_CLASSES[int(c)]}" for c in fashion_labels]
    return torch.cat([crops, fashion]), origin


def random_patches(images: torch.Tensor, size: int, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` patches of ``size`` x ``size`` pixels from random images at random places (seeded): the
    patches a channel could have chosen, to compare its top patches with."""
    generator = torch.Generator().manual_seed(seed)
    which = torch.randint(len(images), (count,), generator=generator)
    rows = torch.randint(images.shape[2] - size + 1, (count,), generator=generator)
    cols = torch.randint(images.shape[3] - size + 1, (count,), generator=generator)
    return torch.stack([images[n, :, r : r + size, c : c + size] for n, r, c in zip(which, rows, cols, strict=True)])


def orientation_coherence(patch: torch.Tensor) -> float:
    """How much of a patch's gradient energy lies along one orientation, from 0 (no preferred direction, or
    flat) to 1 (a straight edge or stripes): (l1 - l2) / (l1 + l2) of the patch's summed structure tensor,
    on the patch's grey level (mean of its channels)."""
    grey = patch.float().mean(dim=0)
    gx = grey[1:-1, 2:] - grey[1:-1, :-2]  # central differences: independent for noise, so no diagonal bias
    gy = grey[2:, 1:-1] - grey[:-2, 1:-1]
    xx, yy, xy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    trace = xx + yy
    if trace <= 1e-12:
        return 0.0
    return float(torch.sqrt((xx - yy) ** 2 + 4 * xy**2) / trace)


def same_source_share(origins: list[str], chosen: torch.Tensor) -> float:
    """Over channels (rows of ``chosen``, indices into the pool), the mean share of a channel's top images that
    come from its most common source (one photo, or one Fashion-MNIST class): 1 means every top patch of a channel came
    from the same source."""
    shares = []
    for row in chosen.tolist():
        names = [origins[n] for n in row]
        shares.append(max(names.count(name) for name in set(names)) / len(names))
    return sum(shares) / len(shares)
