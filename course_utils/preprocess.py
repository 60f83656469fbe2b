"""How an image becomes backbone input: resize, grey to three channels, ImageNet mean and std.

Lesson 01 writes these steps out by hand once; later lessons call these helpers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F
from torchvision import transforms

# The statistics of ImageNet's training photos, per RGB channel: every pretrained torchvision model expects
# its input normalized with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def photo_transform(
    size: int = 96,
    resize: int | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> transforms.Compose:
    """PIL photo -> normalized tensor: short side resized (to ``resize``, default ``size``), centre crop, normalized.

    Training (folders, pets, lesson 01) and serving (predict.Classifier) both build their transform here."""
    return transforms.Compose(
        [
            transforms.Resize(resize or size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def to_backbone_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 grayscale (N x H x W) -> float N x 3 x size x size with ImageNet normalization."""
    x = images.float().div(255.0).unsqueeze(1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.expand(-1, 3, -1, -1)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def grey_probe(height: int = 28, width: int = 28) -> torch.Tensor:
    """Two fixed uint8 grey images (2 x height x width, seeded noise): the input a transform's fingerprint uses."""
    return torch.randint(0, 256, (2, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def output_sha256(transform: Callable[[torch.Tensor], torch.Tensor], probe: torch.Tensor) -> str:
    """sha256 of what ``transform`` makes of ``probe`` (dtype, shape and exact values).

    It changes whenever what the preprocessing produces changes (resizing, antialiasing, normalization, in the
    code or in its constants), which a written description of the steps cannot promise; an edit that leaves
    the output equal (antialiasing when enlarging) leaves it equal, and the features cached with it stay right."""
    with torch.no_grad():
        out = np.ascontiguousarray(transform(probe).detach().cpu().numpy())
    digest = hashlib.sha256(f"{out.dtype.str}{out.shape}".encode())
    digest.update(memoryview(out).cast("B"))
    return digest.hexdigest()
