"""Tests of fercomp.models: registry, architectures, profiling, weights loading, pruned-model rebuild."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
import torchvision.models as tvm
from torch import nn

from fercomp.errors import ConfigError, ModelError
from fercomp.models import (
    count_macs,
    count_params,
    create,
    fit_to_state_dict,
    list_models,
    model_description,
    model_summary,
)
from fercomp.models.transfer import SPECS

ALL_MODELS = list_models()
TRANSFER_MODELS = ["mobilenet_v2", "resnet18", "resnet50", "vgg16"]
TRAIN_CFG_KEYS = {"optimizer", "lr", "weight_decay", "batch_size", "epochs", "augment", "schedule", "label_smoothing"}


def _baseline_params(width: int = 32, classes: int = 7) -> int:
    convs = 1 * width * 9 + 3 * width * width * 9  # bias-free: BN follows each conv
    batchnorms = 4 * 2 * width
    fc = width * 12 * 12 * classes + classes  # 48 px pooled twice -> 12x12 map
    return convs + batchnorms + fc


def _torchvision_params(name: str, classes: int = 7) -> int:
    """torchvision's own count with an RGB stem, minus the two colour planes our 1-channel stem drops."""
    spec = SPECS[name]
    net = spec.constructor(weights=None, num_classes=classes)
    stem = net.get_submodule(spec.stem_conv)
    return count_params(net) - 2 * stem.out_channels * stem.kernel_size[0] * stem.kernel_size[1]


PARAM_RANGES = {
    "baseline_cnn": (_baseline_params(), _baseline_params()),
    "tuned_cnn": (240_000, 252_000),
    "separable_cnn": (50_000, 60_000),
    "vgg_fer": (4_500_000, 5_500_000),
    "se_resnet": (1, 2_000_000),
}


def test_registry_holds_every_architecture():
    assert set(ALL_MODELS) == {
        "baseline_cnn", "tuned_cnn", "separable_cnn", "se_resnet", "vgg_fer",
        "mobilenet_v2", "resnet18", "resnet50", "vgg16",
    }
    assert all(model_description(name) for name in ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_and_size(name):
    torch.manual_seed(0)
    model = create(name)
    assert model.input_size == (48, 48) and model.in_chans == 1
    assert TRAIN_CFG_KEYS <= set(model.default_cfg)

    logits = model(torch.randn(2, 1, 48, 48))
    assert logits.shape == (2, 7)
    F.cross_entropy(logits, torch.tensor([0, 6])).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has non-finite gradient"

    params = count_params(model)
    low, high = PARAM_RANGES.get(name) or (_torchvision_params(name),) * 2
    assert low <= params <= high
    assert count_macs(model) > 0
    assert model.training, "count_macs must restore train mode"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_num_classes_sets_output_width(name):
    model = create(name, num_classes=6).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 48, 48)).shape == (2, 6)
    assert model.get_classifier().out_features == 6


def test_model_kwargs_rebuild_the_same_architecture():
    model = create("se_resnet", num_classes=6, width=16, depth=1)
    rebuilt = create(model.model_name, **model.model_kwargs)
    assert count_params(rebuilt) == count_params(model)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]


def test_se_resnet_width_and_depth_are_configurable():
    default = count_params(create("se_resnet"))
    assert count_params(create("se_resnet", width=16)) < default
    assert count_params(create("se_resnet", depth=(2, 2, 2, 2))) > default
    assert len(create("se_resnet", depth=3).stages[0]) == 3


def test_count_macs_matches_hand_formula_for_convs():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 48x48 out: 48*48 * 4 * (1*3*3)
        nn.Conv2d(4, 8, 3, stride=2, padding=1),  # 24x24 out: 24*24 * 8 * (4*3*3)
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise 24x24: 24*24 * 8 * (1*3*3)
    )
    assert count_macs(model) == 48 * 48 * 4 * 9 + 24 * 24 * 8 * 36 + 24 * 24 * 8 * 9


def test_model_summary_of_a_name():
    summary = model_summary("separable_cnn")
    assert summary["params"] == count_params(create("separable_cnn"))
    assert summary["macs"] == count_macs(create("separable_cnn"))
    assert summary["input_size"] == (48, 48)


def test_unknown_model_lists_the_names():
    with pytest.raises(ModelError, match="nope") as info:
        create("nope")
    assert all(name in str(info.value) for name in ALL_MODELS)
    with pytest.raises(ModelError):
        model_description("nope")


def test_unknown_and_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match="'widht'.*width"):
        create("se_resnet", widht=48)
    with pytest.raises(ConfigError, match="width=0"):
        create("se_resnet", width=0)
    with pytest.raises(ConfigError, match="depth"):
        create("se_resnet", depth=(1, 1))
    with pytest.raises(ConfigError, match="dropout"):
        create("separable_cnn", dropout=1.5)
    with pytest.raises(ConfigError, match="num_classes"):
        create("baseline_cnn", num_classes=1)
    with pytest.raises(ConfigError, match="freeze"):
        create("resnet18", freeze=6)
    with pytest.raises(ConfigError, match="either"):
        create("resnet18", pretrained=True, weights="x.pt")


def _use_cache_dir(monkeypatch, path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(path))


def test_pretrained_without_cached_file_names_the_path(tmp_path, monkeypatch):
    _use_cache_dir(monkeypatch, tmp_path)
    wanted = tmp_path / "checkpoints" / tvm.MobileNet_V2_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    with pytest.raises(ModelError) as info:
        create("mobilenet_v2", pretrained=True)
    assert str(wanted) in str(info.value) and "weights=FILE" in str(info.value)


def test_pretrained_loads_cached_imagenet_file_and_keeps_a_fresh_head(tmp_path, monkeypatch):
    _use_cache_dir(monkeypatch, tmp_path)
    imagenet = tvm.resnet18(weights=None)  # 1000 classes, RGB: the layout of the real file
    cached = tmp_path / "checkpoints" / tvm.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    cached.parent.mkdir()
    torch.save(imagenet.state_dict(), cached)

    model = create("resnet18", pretrained=True)
    assert torch.allclose(model.backbone.conv1.weight, imagenet.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(model.backbone.layer3[0].conv1.weight, imagenet.layer3[0].conv1.weight)
    assert model.get_classifier().weight.shape == (7, 512)
    assert "pretrained" not in model.model_kwargs


def test_weights_file_round_trip(tmp_path):
    torch.manual_seed(0)
    trained = create("mobilenet_v2").eval()
    path = tmp_path / "model.pt"
    torch.save(trained.state_dict(), path)
    loaded = create("mobilenet_v2", weights=str(path)).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))


def test_bad_weights_files_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        create("resnet18", weights=str(tmp_path / "missing.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="garbage.pt"):
        create("resnet18", weights=str(garbage))
    other = tmp_path / "mobilenet.pt"
    torch.save(create("mobilenet_v2").state_dict(), other)
    with pytest.raises(ModelError, match="mobilenet.pt"):
        create("resnet18", weights=str(other))


def _calibrate_batchnorm(net: nn.Module, size: int) -> None:
    """Give BN layers the running statistics of real activations; with torchvision's fresh
    (mean 0, var 1) statistics a random net's eval outputs shrink to ~1e-10 and compare equal
    whatever the stem does."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(8, 1, size, size).repeat(1, 3, 1, 1))
    net.eval()


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_grayscale_stem_equals_rgb_net_on_gray_image(name, tmp_path):
    torch.manual_seed(0)
    rgb_net = SPECS[name].constructor(weights=None, num_classes=7)
    _calibrate_batchnorm(rgb_net, size=96)
    path = tmp_path / "rgb.pth"
    torch.save(rgb_net.state_dict(), path)
    gray_net = create(name, weights=str(path)).eval()

    x = torch.randn(2, 1, 48, 48)
    resized = F.interpolate(x, size=(gray_net.resize,) * 2, mode="bilinear", align_corners=False)
    with torch.no_grad():
        expected = rgb_net(resized.repeat(1, 3, 1, 1))
        assert expected.std() > 1e-3, "outputs too small for the comparison to mean anything"
        assert torch.allclose(gray_net(x), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", TRANSFER_MODELS)
def test_freeze_stops_the_first_stages(name):
    model = create(name, freeze=2)
    frozen = [p for i in range(2) for m in model.stage_modules(i) for p in m.parameters()]
    later = [p for m in model.stage_modules(2) for p in m.parameters()]
    assert frozen and all(not p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in later)
    assert all(p.requires_grad for p in model.get_classifier().parameters())
    model.train()
    frozen_modules = [m for i in range(2) for stage in model.stage_modules(i) for m in stage.modules()]
    assert all(not m.training for m in frozen_modules), "frozen BatchNorm statistics must not update"
    assert count_params(model, trainable_only=True) < count_params(model)


@pytest.mark.parametrize("name", ["separable_cnn", "se_resnet"])
def test_pruned_model_rebuilds_from_registry_and_state_dict(name):
    torch.manual_seed(0)
    pruned = create(name).eval()
    full_params = count_params(pruned)
    pruner = tp.pruner.MetaPruner(
        pruned,
        torch.randn(1, 1, 48, 48),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=[pruned.get_classifier()],
    )
    pruner.step()
    assert count_params(pruned) < full_params // 2

    rebuilt = fit_to_state_dict(create(name), pruned.state_dict()).eval()
    assert count_params(rebuilt) == count_params(pruned)
    for module in rebuilt.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            assert module.groups == module.in_channels == module.out_channels == module.weight.shape[0]
    x = torch.randn(4, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pruned(x))


def test_fit_to_state_dict_rejects_another_architecture():
    with pytest.raises(ModelError, match="checkpoint"):
        fit_to_state_dict(create("separable_cnn"), create("se_resnet").state_dict())
    wrong_kernel = create("baseline_cnn").state_dict()
    wrong_kernel["features.0.0.weight"] = torch.zeros(32, 1, 5, 5)
    with pytest.raises(ModelError, match="kernel"):
        fit_to_state_dict(create("baseline_cnn"), wrong_kernel)


def test_model_args_from_the_command_line():
    from fercomp.cli_options import parse_model_args

    parsed = parse_model_args(["channels=64,128,320", "width=12", "depth=[1,1,2,1]", "dropout=0.3", "tag=a,b"])
    assert parsed == {"channels": [64, 128, 320], "width": 12, "depth": [1, 1, 2, 1], "dropout": 0.3, "tag": "a,b"}
    assert count_params(create("separable_cnn", channels=parsed["channels"])) == 236_303
