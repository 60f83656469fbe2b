"""How an image becomes backbone input: resize, grey to three channels, ImageNet mean and std.

Lesson 01 writes these steps out by hand once; later lessons call these helpers.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision import transforms

# The statistics of ImageNet's training photos, per RGB channel: every pretrained torchvision model expects
# its input normalized with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def photo_transform(size: int = 96, resize: int | None = None) -> transforms.Compose:
    """PIL photo -> normalized tensor: short side resized (to ``resize``, default ``size``), centre crop, normalized."""
    return transforms.Compose(
        [
            transforms.Resize(resize or size),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
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
