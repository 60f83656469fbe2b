"""The torch internals course_utils.genuine reads, pinned one by one: a torch upgrade that moves one fails here by name
(and the exercise checks would otherwise fail, or worse, pass, for a reason nobody can see)."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_file
from torchvision import models

from course_utils import checks, genuine


def test_the_c_tensor_type_and_its_accessors_exist_and_cannot_be_replaced():
    base = genuine.TENSOR_BASE
    assert base in type.mro(torch.Tensor) and base.__module__ == "torch._C"
    for name in ("requires_grad", "shape", "dtype"):  # read with descriptor.__get__(tensor)
        descriptor = base.__dict__[name]
        assert type(descriptor) is types.GetSetDescriptorType, name
    for name in ("numel", "item", "detach", "cpu", "clone", "equal", "sub", "float", "max", "abs"):
        assert type(base.__dict__[name]) is types.MethodDescriptorType, name
    with pytest.raises(TypeError):  # immutable: a submission cannot swap the accessors the checks use
        base.requires_grad = property(lambda self: False)
    with pytest.raises(TypeError):
        base.numel = lambda self: 0


def test_the_accessors_read_what_torch_reports():
    x = torch.zeros(2, 3, requires_grad=True)
    assert genuine.shape_of(x) == (2, 3) and genuine.numel(x) == 6 and genuine.requires_grad(x)
    assert not genuine.requires_grad(x.detach())
    assert genuine.equal(genuine.detached_copy(x), torch.zeros(2, 3))
    assert genuine.max_abs_difference(torch.ones(2), torch.tensor([1.0, 3.5])) == 2.5
    assert genuine.is_real_bool(torch.tensor(True)) and not genuine.is_real_bool(torch.tensor(1))


def test_a_module_keeps_its_members_and_hooks_in_the_dictionaries_genuine_walks():
    layer = nn.Linear(3, 2)
    state = object.__getattribute__(layer, "__dict__")
    for key in genuine.MODULE_DICTS:
        assert type(state[key]) in (dict, genuine.OrderedDict), key
    assert state["_parameters"]["weight"] is layer.weight and state["in_features"] == 3 and state["out_features"] == 2
    for key in genuine.HOOKS:
        assert isinstance(state[key], dict), key
    handle = layer.register_forward_hook(lambda *args: None)
    assert any(len(state[key]) for key in genuine.HOOKS)
    handle.remove()
    for key in genuine.GLOBAL_HOOKS:
        assert isinstance(getattr(module_file, key), dict), key
    assert issubclass(nn.parameter.UninitializedParameter, nn.Parameter)


def test_an_optimizer_keeps_its_groups_as_plain_lists_of_dicts():
    optimizer = torch.optim.SGD(nn.Linear(3, 2).parameters(), lr=0.1)
    groups = object.__getattribute__(optimizer, "__dict__")["param_groups"]
    assert groups is optimizer.param_groups and genuine.real_param_groups(optimizer) is groups
    assert type(groups) is list and type(groups[0]) is dict and type(groups[0]["params"]) is list


def test_torch_and_torchvision_classes_are_genuine_and_look_alikes_are_not():
    for cls in (nn.Linear, nn.BatchNorm2d, models.MobileNetV2, models.ResNet, torch.optim.Adam, torch.Tensor):
        assert genuine.genuine_class(cls), cls

    class Linear(nn.Linear):
        pass

    assert not genuine.genuine_class(Linear) and not genuine.genuine_class(type("Linear", (), {}))
    names = [name for name, _ in genuine.real_modules(models.resnet18(weights=None))]
    assert names == [name for name, _ in models.resnet18(weights=None).named_modules()]


def test_checks_raises_the_same_failure_the_genuine_readers_raise():
    assert checks.CheckFailed is genuine.CheckFailed and issubclass(checks.CheckFailed, AssertionError)
    with pytest.raises(checks.CheckFailed, match="should be a torch nn.Module, not a str"):
        checks.expect_genuine_model("a model", "build_model")
