"""Looking inside a backbone: activations stage by stage, and nearest neighbours in feature space."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .backbones import family_of, stages
from .photos import photo_crops  # noqa: F401 (lesson 01 imports it from here; defined in photos)


def stage_output_modules(model: nn.Module) -> OrderedDict[str, nn.Module]:
    """For each stage but the head, the module whose output is the stage's output (hook it to see the stage)."""
    out: OrderedDict[str, nn.Module] = OrderedDict()
    for name, module in stages(model).items():
        if name == "head":
            continue
        out[name] = module[-1] if isinstance(module, nn.ModuleList) else module
    if family_of(model) == "resnet":
        out["stem"] = model.relu  # conv1 -> bn1 -> relu
    return out


@torch.no_grad()
def activations_by_stage(model: nn.Module, image: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
    """Stage name -> activation maps (channels x H x W) of one normalized image (3 x H x W), early to late."""
    captured: OrderedDict[str, torch.Tensor] = OrderedDict()
    handles = []
    for name, module in stage_output_modules(model).items():

        def hook(_module, _inputs, output, name=name):
            if name not in captured:  # the first call: resnet runs model.relu once, in its stem
                captured[name] = output[0].detach().cpu()

        handles.append(module.register_forward_hook(hook))
    try:
        model.eval()(image.unsqueeze(0).to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def cosine_neighbours(queries: torch.Tensor, references: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Indices (len(queries) x k) of the k most cosine-similar references for each query."""
    q = nn.functional.normalize(queries.float(), dim=1)
    r = nn.functional.normalize(references.float(), dim=1)
    return (q @ r.T).topk(k, dim=1).indices


def one_nn_accuracy(
    train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, test_labels: torch.Tensor
) -> float:
    """Accuracy of labelling each test example with the label of its nearest (cosine) training example."""
    nearest = cosine_neighbours(test_features, train_features, k=1)[:, 0]
    return (train_labels[nearest] == test_labels).float().mean().item()


# scikit-image photos that ship with the package (no download): scenes, textures, objects; lesson 01 loads
# each with course_utils.photos.bundled_photo for its neighbour test.
SKIMAGE_PHOTOS = (
    "chelsea",
    "coffee",
    "astronaut",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "camera",
    "coins",
    "horse",
    "moon",
    "page",
    "immunohistochemistry",
    "hubble_deep_field",
    "colorwheel",
    "retina",
)
