"""Real photos bundled with scikit-image and scikit-learn, for demos that run offline."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .preprocess import photo_transform

PHOTO_NAMES = ("chelsea", "coffee", "astronaut", "rocket", "china", "flower")


def bundled_photo(name: str) -> Image.Image:
    """One bundled photo as an RGB PIL image: scikit-image's (chelsea is a cat; grey and black-and-white ones
    converted) or scikit-learn's china and flower."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        images = load_sample_images()
        by_name = {
            fname.rsplit("/", 1)[-1].split(".")[0]: img
            for fname, img in zip(images.filenames, images.images, strict=True)
        }
        array = by_name[name]
    else:
        from skimage import data as skdata

        loader = getattr(skdata, name, None)
        if name.startswith("_") or not callable(loader):
            raise ValueError(
                f"unknown photo {name!r}; choose from {', '.join(PHOTO_NAMES)} or another scikit-image photo"
            )
        array = np.asarray(loader())
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
    return Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")


def bundled_photos(names=PHOTO_NAMES) -> dict[str, Image.Image]:
    """name -> RGB image for each bundled photo."""
    return {name: bundled_photo(name) for name in names}


@torch.no_grad()
def top_k(
    model: torch.nn.Module, image: Image.Image, categories: list[str], k: int = 5, size: int = 224
) -> list[tuple[str, float]]:
    """The model's k most probable classes for one photo, with probabilities."""
    model.eval()
    device = next(model.parameters()).device
    x = photo_transform(size, resize=round(size * 256 / 224))(image).unsqueeze(0).to(device)
    probs = model(x).softmax(1)[0].cpu()
    values, indices = probs.topk(k)
    return [(categories[i], float(v)) for v, i in zip(values, indices, strict=True)]
