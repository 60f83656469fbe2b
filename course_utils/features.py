"""f(x) in one pass: run a frozen body over a dataset once and keep its features in memory."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .backbones import body_features
from .device import loader_kwargs


@torch.no_grad()
def extract_features(
    model: nn.Module, dataset: Dataset, batch_size: int = 128, device: torch.device | str = "cpu", progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features N x feature_dim float32 on the CPU, labels N int64): eval mode, no grad, one pass, in order."""
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, **loader_kwargs(device))
    feats, labels = [], []
    for images, targets in tqdm(loader, desc="features", disable=not progress, leave=False):
        feats.append(body_features(model, images.to(device)).float().cpu())
        labels.append(torch.as_tensor(targets))
    return torch.cat(feats), torch.cat(labels)
