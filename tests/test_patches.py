"""Top-activating patches on real MobileNetV2 weights and real images: receptive fields, crops, statistics."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from torch import nn
from torchvision import models

from course_utils.backbones import load_backbone
from course_utils.explore import stage_output_modules
from course_utils.fashion import load_fashion_mnist
from course_utils.patches import (
    crop_window,
    image_pool,
    orientation_coherence,
    random_patches,
    receptive_field,
    same_source_share,
    stage_activations,
    top_images,
    top_patches,
)
from course_utils.photos import bundled_photos
from course_utils.plots import plot_top_patches


@pytest.fixture(scope="module")
def pretrained():
    return load_backbone("mobilenet_v2", fetch=False).eval()


@pytest.fixture(scope="module")
def pool():
    images, labels = load_fashion_mnist(train=False)
    return image_pool(bundled_photos(["chelsea", "coffee", "astronaut"]), 4, images[:8], labels[:8], size=64)


def test_receptive_fields_match_the_architectures_published_values():
    resnet = models.resnet18(weights=None)  # structure only; the receptive field does not depend on weights
    sizes = {stage: receptive_field(resnet, stage).size for stage in ("stem", "layer1", "layer2", "layer3", "layer4")}
    assert sizes == {"stem": 7, "layer1": 43, "layer2": 99, "layer3": 211, "layer4": 435}  # the shortcut is skipped
    assert receptive_field(resnet, "layer4").stride == 32
    mobilenet = models.mobilenet_v2(weights=None)
    fields = {s: receptive_field(mobilenet, s) for s in ("stem", "block1", "block2", "block3", "block4")}
    assert {s: (f.size, f.stride) for s, f in fields.items()} == {
        "stem": (3, 2),
        "block1": (7, 2),
        "block2": (19, 4),
        "block3": (59, 8),
        "block4": (171, 16),
    }
    assert all(f.offset == 0 for f in fields.values())  # "same" padding everywhere: position i sits on pixel stride*i


def test_receptive_field_of_a_small_network_by_hand():
    mobilenet = models.mobilenet_v2(weights=None)
    mobilenet.features[0][0] = nn.Conv2d(3, 32, 5, stride=2, padding=0, bias=False)
    field = receptive_field(mobilenet, "stem")
    assert (field.size, field.stride, field.offset) == (5, 2, 2.0)  # unpadded: output 0 sits on pixels 0..4
    mobilenet.features[1].conv[0][0] = nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=32, bias=False)
    field = receptive_field(mobilenet, "block1")  # then a dilated 3x3 spans 5 input positions, 2 pixels apart
    assert (field.size, field.stride, field.offset) == (5 + 4 * 2, 2, 2.0)
    with pytest.raises(ValueError, match="unknown stage"):
        receptive_field(mobilenet, "head")


def test_crop_window_stays_inside_the_image():
    assert crop_window(10.0, 5, 64) == (8, 13)
    assert crop_window(0.0, 19, 64) == (0, 19)  # sticks out at the top: moved in
    assert crop_window(63.0, 19, 64) == (45, 64)
    assert crop_window(30.0, 171, 64) == (0, 64)  # larger than the image: the whole image


@pytest.mark.parametrize("stage", ["block2", "block3"])
def test_top_patch_holds_everything_its_unit_sees(pretrained, pool, stage):
    images, _ = pool
    found = top_patches(pretrained, stage, [0, 7], images, k=3)
    field = found["field"]
    values, rows, cols = stage_activations(pretrained, stage, images)
    module = stage_output_modules(pretrained)[stage]
    for i, channel in enumerate([0, 7]):
        assert torch.equal(found["scores"][i], values[:, channel].topk(3).values)  # the 3 largest, in order
        n = int(found["images"][i, 0])
        r, c = int(rows[n, channel]), int(cols[n, channel])
        r0, r1 = crop_window(field.offset + field.stride * r, found["patch_size"], images.shape[2])
        c0, c1 = crop_window(field.offset + field.stride * c, found["patch_size"], images.shape[3])
        assert torch.equal(found["patches"][i, 0], images[n, :, r0:r1, c0:c1])
        # Zero every pixel outside the patch: the unit's value does not change, so the patch is all it sees.
        masked = torch.zeros_like(images[n : n + 1])
        masked[..., r0:r1, c0:c1] = images[n : n + 1, :, r0:r1, c0:c1]
        seen = []
        handle = module.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out))
        with torch.no_grad():
            pretrained(masked)
        handle.remove()
        assert torch.allclose(seen[0][0, channel, r, c], values[n, channel], atol=1e-4)


def test_top_patches_shapes_and_errors(pretrained, pool):
    images, origin = pool
    assert len(origin) == len(images) == 3 * 4 + 8 and origin[0] == "chelsea" and origin[-1].startswith("fashion: ")
    found = top_patches(pretrained, "last_conv", [3, 1279], images, k=5)
    assert found["patches"].shape == (2, 5, 3, 64, 64)  # a late stage sees more than the image: the whole image
    assert found["channels"] == [3, 1279] and found["stage"] == "last_conv"
    assert torch.equal(top_images(pretrained, "last_conv", images, k=5)[[3, 1279]], found["images"])
    assert torch.equal(found["every_channel"], top_images(pretrained, "last_conv", images, k=5))
    with pytest.raises(ValueError, match="1280 channels"):
        top_patches(pretrained, "last_conv", [1280], images)
    with pytest.raises(ValueError, match="k=99"):
        top_patches(pretrained, "block2", [0], images, k=99)


def test_orientation_coherence_tells_an_edge_from_noise():
    stripes = torch.zeros(3, 19, 19)
    stripes[:, :, ::4] = 1.0
    assert orientation_coherence(stripes) > 0.99
    assert orientation_coherence(stripes.transpose(1, 2)) > 0.99
    assert orientation_coherence(torch.ones(3, 19, 19)) == 0.0  # flat: no direction at all
    noise = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert orientation_coherence(noise) < 0.1


def test_random_patches_are_seeded_crops(pool):
    images, _ = pool
    patches = random_patches(images, 19, 50, seed=1)
    assert patches.shape == (50, 3, 19, 19) and torch.equal(patches, random_patches(images, 19, 50, seed=1))
    assert not torch.equal(patches, random_patches(images, 19, 50, seed=2))


def test_same_source_share():
    origins = ["cat", "cat", "cup", "cup", "fashion: Bag"]
    assert same_source_share(origins, torch.tensor([[0, 1], [2, 3]])) == 1.0
    assert same_source_share(origins, torch.tensor([[0, 2, 4, 1]])) == 0.5


def test_plot_top_patches_labels_rows_and_models(pretrained, pool):
    images, _ = pool
    found = {
        "ImageNet weights": [top_patches(pretrained, s, [1, 2], images, k=4) for s in ("block2", "last_conv")],
        "random weights": [top_patches(pretrained, s, [1, 2], images, k=4) for s in ("block2", "last_conv")],
    }
    fig = plot_top_patches(found, title="what channels respond to")
    assert fig._suptitle.get_text() == "what channels respond to"
    assert len(fig.axes) == 4 * (2 * 4 + 1)  # 4 rows; 4 patches per model and a gap
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == [
        "block2 ch 1\n19x19 px",
        "block2 ch 2\n19x19 px",
        "last_conv ch 1\n64x64 px",
        "last_conv ch 2\n64x64 px",
    ]
    assert [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")] == [
        "ImageNet weights",
        "random weights",
    ]
    found["random weights"][0] = top_patches(pretrained, "block2", [5, 6], images, k=4)
    with pytest.raises(ValueError, match="same stages and channels"):
        plot_top_patches(found)
