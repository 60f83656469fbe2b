"""course_utils.checks (and course_utils.genuine under it) against objects that lie: the checks read real parameters
and refuse what could pretend."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models

from course_utils import checks, genuine

WHERE = "setup_transfer_learning"


def frozen_mobilenet(num_classes: int = 3) -> nn.Module:
    """mobilenet_v2 (random weights: the structure is what matters here) with a new head, the body frozen."""
    model = models.mobilenet_v2(weights=None)
    for param in model.parameters():
        param.requires_grad = False
    model.classifier[-1] = nn.Linear(1280, num_classes)
    return model


class ReportsOnlyTheHead(models.MobileNetV2):
    """Nothing frozen, but named_parameters/named_buffers show only the head (the issue's liar)."""

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        for name, param in super().named_parameters(prefix, recurse, remove_duplicate):
            if name.startswith("classifier.1."):
                yield name, param

    def named_buffers(self, *args, **kwargs):
        return iter(())


@pytest.fixture(scope="module")
def honest():
    return frozen_mobilenet()


def test_real_parameters_and_buffers_are_what_torch_lists_for_an_honest_model(honest):
    assert [n for n, _ in genuine.real_named_parameters(honest)] == [n for n, _ in honest.named_parameters()]
    assert [n for n, _ in genuine.real_named_buffers(honest)] == [n for n, _ in honest.named_buffers()]
    resnet = models.resnet18(weights=None)
    assert [n for n, _ in genuine.real_named_parameters(resnet)] == [n for n, _ in resnet.named_parameters()]
    assert checks.head_parameter_names(honest) == {"classifier.1.weight", "classifier.1.bias"}
    checks.expect_trainable_exactly(honest, checks.head_parameter_names(honest), WHERE)
    shared = nn.Sequential(nn.Linear(2, 2))
    shared.append(shared[0])  # the same layer twice: listed once, as torch does
    assert [n for n, _ in genuine.real_named_parameters(shared)] == [n for n, _ in shared.named_parameters()]


def test_a_subclass_that_hides_its_parameters_is_refused():
    liar = ReportsOnlyTheHead()
    liar.classifier[-1] = nn.Linear(1280, 3)  # nothing frozen
    assert {n for n, p in liar.named_parameters() if p.requires_grad} == {"classifier.1.weight", "classifier.1.bias"}
    expected = "has a ReportsOnlyTheHead at the top level .*not a torch or torchvision class"
    for attempt in (
        lambda: checks.expect_trainable_exactly(liar, {"classifier.1.weight", "classifier.1.bias"}, WHERE),
        lambda: checks.snapshot(liar),
        lambda: checks.head_parameter_names(liar),
        lambda: checks.expect_optimizer_matches(torch.optim.Adam(liar.classifier.parameters()), liar, WHERE),
    ):
        with pytest.raises(checks.CheckFailed, match=expected):
            attempt()


def test_a_method_replaced_on_the_instance_or_a_hook_is_refused():
    model = frozen_mobilenet()
    model.named_parameters = lambda *args, **kwargs: iter(())
    with pytest.raises(checks.CheckFailed, match="method named_parameters of the MobileNetV2 at the top level"):
        checks.snapshot(model)
    model = frozen_mobilenet()
    model.features[3].register_forward_hook(lambda module, inputs, output: output * 0)
    with pytest.raises(checks.CheckFailed, match=r"hook \(forward_hooks\) on the InvertedResidual at 'features.3'"):
        checks.expect_trainable_exactly(model, checks.head_parameter_names(frozen_mobilenet()), WHERE)


def test_frozen_weights_and_batchnorm_statistics_are_read_from_the_modules(honest):
    model = frozen_mobilenet()
    before = checks.snapshot(model)
    model.train()(torch.randn(2, 3, 32, 32))  # train mode: BatchNorm statistics move although frozen
    with pytest.raises(checks.CheckFailed, match="BatchNorm running statistics changed"):
        checks.expect_unchanged(before, model, set(), "after training", WHERE)


def test_a_linear_layer_that_misstates_its_size_is_refused():
    head = nn.Linear(64, 3)
    head.in_features = 1280
    with pytest.raises(checks.CheckFailed, match=r"says 1280 -> 3 but whose weight has shape \(3, 64\)"):
        checks.expect_type(head, nn.Linear, "the trained head", WHERE)
    checks.expect_type(nn.Linear(1280, 3), nn.Linear, "the trained head", WHERE)

    class Mine(nn.Linear):
        pass

    with pytest.raises(checks.CheckFailed, match="a class of your own"):
        checks.expect_type(Mine(1280, 3), nn.Linear, "the trained head", WHERE)


class AlwaysAbove(float):
    """A float that says it beats any floor."""

    def __gt__(self, other):
        return True


class Truthy:
    def __bool__(self):
        return True


def test_numbers_and_truth_must_be_real():
    with pytest.raises(checks.CheckFailed, match="fraction between 0 and 1, got AlwaysAbove"):
        checks.expect_accuracy(AlwaysAbove(0.1), 0.6, "held-out accuracy", WHERE)
    for real in (0.9, 1, np.float64(0.9), np.float32(0.9), torch.tensor(0.9)):
        checks.expect_accuracy(real, 0.6, "held-out accuracy", WHERE)
    with pytest.raises(checks.CheckFailed, match="below the floor"):
        checks.expect_accuracy(np.float32(0.5), 0.6, "held-out accuracy", WHERE)
    with pytest.raises(checks.CheckFailed, match="not True or False"):
        checks.check(Truthy(), "the comparison should hold", WHERE)
    for true in (True, np.float64(1.0) > 0, torch.tensor(True)):
        checks.check(true, "holds", WHERE)


def test_a_tensor_subclass_cannot_fake_its_shape():
    class Shaped(torch.Tensor):
        @property
        def shape(self):
            return torch.Size([2, 3])

    fake = torch.zeros(5).as_subclass(Shaped)
    assert fake.shape == (2, 3)
    with pytest.raises(checks.CheckFailed, match="should be a torch Tensor, but it is a Shaped"):
        checks.expect_shape(fake, (2, 3), "the output", WHERE)
    checks.expect_shape(torch.zeros(2, 3), (2, 3), "the output", WHERE)


def test_an_optimizer_must_be_torchs_and_is_read_from_itself(honest):
    trainable = [p for p in honest.parameters() if p.requires_grad]
    checks.expect_optimizer_matches(torch.optim.Adam(trainable, lr=0.01), honest, WHERE)

    class Claims(torch.optim.Adam):
        pass

    with pytest.raises(checks.CheckFailed, match="a class of your own"):
        checks.expect_optimizer_matches(Claims(trainable), honest, WHERE)
    with pytest.raises(checks.CheckFailed, match="in the optimizer but frozen"):
        checks.expect_optimizer_matches(torch.optim.Adam(honest.parameters()), honest, WHERE)


def test_the_exercise_check_and_the_lessons_helper_compare_an_optimizer_the_same_way(honest):
    from course_utils.backbones import optimizer_parameter_problems

    stale = torch.optim.SGD(list(honest.features[-1].parameters()), lr=0.1)  # frozen ones in, the head left out
    problems = optimizer_parameter_problems(stale, honest)
    assert len(problems) == 5 and problems[0].startswith("in the optimizer but frozen: features.18.")
    with pytest.raises(checks.CheckFailed) as failed:
        checks.expect_optimizer_matches(stale, honest, WHERE)
    assert f"{len(problems)} problems, e.g. " + "; ".join(problems[:3]) in str(failed.value)
