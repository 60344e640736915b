"""Tests for ferkit.models: the registry and the notebook's CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ferkit.models import count_parameters, create_model, list_models, register_model
from ferkit.utils.errors import FerkitError


def test_classic_is_the_notebooks_cnn_with_674759_parameters():
    model = create_model("classic")
    assert count_parameters(model) == 674_759  # Keras count: batch-norm statistics included
    assert count_parameters(model, include_batchnorm_statistics=False) == 674_759 - 2 * (
        64 + 128 + 64 + 64
    )
    convolutions = [module for module in model.modules() if isinstance(module, nn.Conv2d)]
    assert [conv.out_channels for conv in convolutions] == [64, 64, 128, 128, 64, 64]
    assert all(conv.kernel_size == (3, 3) and conv.padding == (1, 1) for conv in convolutions)
    dense = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in dense] == [
        (6 * 6 * 64, 128),
        (128, 64),
        (64, 7),
    ]
    dropouts = [module.p for module in model.modules() if isinstance(module, nn.Dropout)]
    assert dropouts == [0.25, 0.5, 0.5, 0.5, 0.25]


def test_classic_block_order_is_conv_conv_pool_dropout_batchnorm():
    layers = [type(module).__name__ for module in create_model("classic").features]
    assert layers[:7] == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Dropout", "BatchNorm2d"]


@pytest.mark.parametrize("batch", [1, 5])
def test_classic_outputs_logits_per_class(batch):
    model = create_model("classic", num_classes=4, channels=[8, 8, 8]).eval()
    assert model(torch.zeros(batch, 1, 48, 48)).shape == (batch, 4)


def test_create_model_records_its_arguments():
    model = create_model("classic", channels=(8, 16, 8))
    assert model.ferkit_name == "classic"
    assert model.ferkit_arguments["channels"] == [8, 16, 8]
    assert model.ferkit_arguments["num_classes"] == 7
    rebuilt = create_model("classic", **model.ferkit_arguments)
    assert count_parameters(rebuilt) == count_parameters(model)


def test_unknown_model_and_argument_name_the_choices():
    with pytest.raises(FerkitError, match="unknown model 'resnet9000'.*classic"):
        create_model("resnet9000")
    with pytest.raises(FerkitError, match="no argument.*width.*channels"):
        create_model("classic", width=3)


def test_registering_a_model_is_one_decorated_function():
    @register_model("test_linear_probe")
    def linear_probe(num_classes: int = 7, in_channels: int = 1):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 48 * 48, num_classes))

    assert "test_linear_probe" in list_models()
    assert create_model("test_linear_probe", num_classes=3)(torch.zeros(2, 1, 48, 48)).shape == (
        2,
        3,
    )
    with pytest.raises(ValueError, match="already registered"):
        register_model("test_linear_probe")(linear_probe)


@pytest.mark.parametrize("name", ["classic", "vgg", "resnet", "mobile"])
def test_every_architecture_trains_one_step_and_reports_its_cost(name):
    from ferkit.models import model_cost

    small = {
        "classic": {"channels": [4, 8, 8]},
        "vgg": {"widths": [8, 16], "depths": [1, 1]},
        "resnet": {"widths": [8, 16], "depths": [1, 1], "stem_width": 8},
        "mobile": {"widths": [8, 16], "depths": [1, 1], "stem_width": 8},
    }[name]
    model = create_model(name, num_classes=5, **small)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(6, 1, 48, 48), torch.randint(0, 5, (6,))
    before = [parameter.detach().clone() for parameter in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters()))
    cost = model_cost(model)
    assert cost["parameters"] == count_parameters(model) and cost["mflops"] > 0


def test_default_architecture_costs():
    from ferkit.models import model_cost

    assert model_cost(create_model("mobile"))["mflops"] <= 25  # the "small" budget
    assert model_cost(create_model("classic"))["mflops"] == pytest.approx(459.8, abs=0.5)
