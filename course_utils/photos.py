"""Real photos bundled with scikit-image and scikit-learn, for demos that run offline, and random crops of them."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from .preprocess import IMAGENET_MEAN, IMAGENET_STD, photo_transform

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


def photo_crops(
    photos: dict[str, Image.Image], views: int, size: int = 96, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``views`` random crops (15-50% of the area, random flip) of each photo, as backbone input:
    (images, photo index, photo names). Seeded: the same arguments give the same crops."""
    crop = transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=(0.15, 0.5)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    torch.manual_seed(seed)
    images, labels = [], []
    for index, photo in enumerate(photos.values()):
        images += [crop(photo) for _ in range(views)]
        labels += [index] * views
    return torch.stack(images), torch.tensor(labels), list(photos)


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
