"""The model zoo by name: every config in ``configs/model/``, built like timm's ``create_model``, with
the published references each family is held to and, where convzoo ships them, trained weights.

Examples:
    >>> from convzoo import create_model
    >>> net = create_model("resnet_cifar", depth=56, num_classes=100)
    >>> sum(p.numel() for p in net.parameters())
    858868
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from convzoo.network.build import ConvNet, build_model
from convzoo.errors import ConfigError, suggest

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["PUBLISHED", "Reference", "create_model", "list_models", "model_table", "zoo_spec"]


@dataclass(frozen=True)
class Reference:
    """A published network a zoo config reproduces: its parameter count (asserted by ``tests/test_zoo.py``)
    and, where published, its CIFAR-10 test top-1.

    Attributes:
        network: the published name (``ResNet-20``).
        model: the zoo config (``resnet_cifar``).
        overrides: the config's top-level overrides for this size.
        params: parameters for 10 classes at 32x32, as published.
        top1: published CIFAR-10 test accuracy in percent, ``None`` where none is published.
        source: where ``top1`` (or, without one, the architecture) was published.
        training: how the source trained for ``top1`` (epochs, hardware, time), where it says; the results
            page sets it beside convzoo's own training of the same network.

    Examples:
        >>> next(r for r in PUBLISHED if r.network == "ResNet-56").top1
        93.03
    """

    network: str
    model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    params: int = 0
    top1: float | None = None
    source: str = ""
    training: str = ""


_HE, _HE_TRAINING = "He et al. 2016, Table 6", "182 epochs (64k iterations at batch 128) on GPUs"
_CHENYAOFO = "chenyaofo/pytorch-cifar-models"


def _chenyaofo_training(time: str = "") -> str:
    """chenyaofo's training, with its wall time where the repository gives one."""
    return f"200 epochs on one GTX 1080{', ' + time if time else ''} (best epoch chosen on the test set)"


_KUANGLIU = "kuangliu/pytorch-cifar"
_WRN, _WRN_TRAINING = "Zagoruyko & Komodakis 2016", "200 epochs at batch 128 on GPUs"
#: Every published network the zoo reproduces, in the order the docs list them.
PUBLISHED: tuple[Reference, ...] = (
    Reference("ResNet-20", "resnet_cifar", {"depth": 20}, 269_722, 91.25, _HE, _HE_TRAINING),
    Reference("ResNet-20", "resnet_cifar", {"depth": 20}, 269_722, 92.60, _CHENYAOFO,
              _chenyaofo_training("50 min")),
    Reference("ResNet-32", "resnet_cifar", {"depth": 32}, 464_154, 92.49, _HE, _HE_TRAINING),
    Reference("ResNet-44", "resnet_cifar", {"depth": 44}, 658_586, 92.83, _HE, _HE_TRAINING),
    Reference("ResNet-56", "resnet_cifar", {"depth": 56}, 853_018, 93.03, _HE, _HE_TRAINING),
    Reference("ResNet-56", "resnet_cifar", {"depth": 56}, 853_018, 94.37, _CHENYAOFO,
              _chenyaofo_training("2 h 08 min")),
    Reference("ResNet-110", "resnet_cifar", {"depth": 110}, 1_727_962, 93.57, _HE, _HE_TRAINING),
    Reference("ResNet-20, option B shortcuts", "resnet_cifar", {"depth": 20, "shortcut": "projection"}, 272_474, None, _HE),
    Reference("ResNet-18 (CIFAR layout)", "resnet", {"depth": 18}, 11_173_962, 93.02, _KUANGLIU),
    Reference("ResNet-34 (CIFAR layout)", "resnet", {"depth": 34}, 21_282_122, None, "He et al. 2016"),
    Reference("ResNet-50 (CIFAR layout)", "resnet", {"depth": 50}, 23_520_842, 93.62, _KUANGLIU),
    Reference("PreAct-ResNet-18", "preact_resnet", {"depth": 18}, 11_171_146, 95.11, _KUANGLIU),
    Reference("VGG-11-BN", "vgg", {"depth": 11}, 9_231_114, 92.79, _CHENYAOFO, _chenyaofo_training()),
    Reference("VGG-13-BN", "vgg", {"depth": 13}, 9_416_010, 94.00, _CHENYAOFO, _chenyaofo_training()),
    Reference("VGG-16-BN", "vgg", {"depth": 16}, 14_728_266, 94.16, _CHENYAOFO, _chenyaofo_training()),
    Reference("VGG-19-BN", "vgg", {"depth": 19}, 20_040_522, 93.91, _CHENYAOFO, _chenyaofo_training()),
    Reference("MobileNetV2 x1.0", "mobilenetv2", {}, 2_296_922, 93.79, _CHENYAOFO, _chenyaofo_training()),
    Reference("DenseNet-BC-100, k=12", "densenet", {"depth": 100, "growth_rate": 12}, 769_162, 95.49,
              "Huang et al. 2017, C10+", "300 epochs at batch 64 on GPUs"),
    Reference("WRN-16-8", "wrn", {"depth": 16, "widen": 8}, 10_961_370, 95.19, _WRN, _WRN_TRAINING),
    Reference("WRN-28-10", "wrn", {"depth": 28, "widen": 10}, 36_479_194, 96.11, _WRN, _WRN_TRAINING),
    Reference("WRN-40-4", "wrn", {"depth": 40, "widen": 4}, 8_949_210, 95.47, _WRN, _WRN_TRAINING),
    Reference("WRN-40-1", "wrn", {"depth": 40, "widen": 1, "dropout": 0.0}, 563_930, 93.15, f"{_WRN} (ZCA, no dropout)",
              _WRN_TRAINING),
    Reference("SE-ResNet-18 (pre-activation)", "se_resnet", {"depth": 18}, 11_260_354, None, "Hu et al. 2018"),
    Reference("ConvMixer-256/8, k 5, p 2", "convmixer", {}, 594_186, 92.60,
              "Trockman & Kolter, locuslab/convmixer-cifar10",
              "25 epochs of about 43 s (18 min) on one RTX 2080 Ti (their README's log)"),
    # airbench94 publishes no parameter count: this is what its airbench94.py builds.
    Reference("airbench94", "airbench", {}, 1_972_792, 94.01, "Keller Jordan, KellerJordan/cifar10-airbench",
              "9.9 epochs, 3.83 s on one NVIDIA A100"),
)


def list_models() -> list[str]:
    """The names ``create_model`` and ``model=NAME`` accept.

    Returns:
        Every config name in ``configs/model/``, sorted.

    Examples:
        >>> {"resnet_cifar", "convmixer", "vgg"} <= set(list_models())
        True
    """
    from convzoo.config import config_dir

    return sorted(path.stem for path in (config_dir() / "model").glob("*.yaml"))


def zoo_spec(name: str, **overrides: Any) -> DictConfig:
    """The composed (unresolved) spec of zoo model ``name`` with top-level keys replaced by ``overrides``.

    Args:
        name: a zoo model (``list_models()``).
        **overrides: top-level keys of its config (``depth=56``).

    Returns:
        The spec as an OmegaConf node, interpolations unresolved.

    Examples:
        >>> zoo_spec("resnet_cifar", depth=56).depth
        56
    """
    from convzoo.config import compose

    names = list_models()
    if name not in names:
        raise ConfigError(f"Unknown model {name!r}.{suggest(name, names)} Models: {', '.join(names)}.")
    spec = compose([f"model={name}"]).model
    for key, value in overrides.items():
        if key not in spec:
            keys = [k for k in spec if k != "layers"]
            raise ConfigError(
                f"model {name!r} has no key {key!r}.{suggest(key, keys)} Its keys: {', '.join(keys)}."
            )
        spec[key] = value
    return spec


def create_model(name: str, outputs: Sequence[str] | str | None = None, pretrained: str | None = None,
                 **overrides: Any) -> ConvNet:
    """Build zoo model ``name`` (a config in ``configs/model/``) with its top-level keys overridden.

    ``create_model("resnet_cifar", depth=56, num_classes=100)`` is what
    ``model=resnet_cifar model.depth=56 model.num_classes=100`` gives ``train.py``.

    Args:
        name: a zoo model (``list_models()``).
        outputs: layers to return instead of the last (a backbone's features; see ``build_model``).
        pretrained: a weight set's tag (``"cifar10"``): the network gets convzoo's trained weights and
            is returned in eval mode. The overrides must describe the network the weights were trained
            as; otherwise the error names the tags and overrides there are (``convzoo.list_pretrained()``).
        **overrides: top-level keys of the config (``depth=56``, ``num_classes=100``).

    Returns:
        The network: a ``ConvNet`` (a chain) or a ``GraphNet``.

    Raises:
        ConfigError: an unknown model, key or weight tag, with the closest valid names.

    Examples:
        >>> net = create_model("resnet_cifar", depth=20, pretrained="cifar10")
        >>> net.training, net.num_classes
        (False, 10)
    """
    if pretrained is None:
        return build_model(zoo_spec(name, **overrides), outputs=outputs)
    from convzoo.network.pretrained import find_pretrained, load_pretrained

    entry = find_pretrained(name, pretrained, overrides)
    network = build_model(zoo_spec(name, **overrides), outputs=outputs)
    load_pretrained(network, entry, strict=outputs is None)  # a backbone leaves out the layers no output needs
    return network.eval()


def _description(name: str) -> str:
    """A model config's header comment up to its first colon: what the model is."""
    from convzoo.config import config_dir

    header = []
    for line in (config_dir() / "model" / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").rstrip())
    return " ".join(header).split(": ")[0]


def model_table() -> list[dict[str, Any]]:
    """Every zoo model at its default size: parameters and FLOPs, measured on the meta device (no memory).

    Returns:
        One row per model: ``model``, ``params``, ``mflops``, ``input``, ``outputs``, ``description``
        and ``weights`` (the tags and single-view test accuracy of its shipped weight sets).

    Examples:
        >>> next(row for row in model_table() if row["model"] == "resnet_cifar")["params"]
        269722
    """
    import torch

    from convzoo.network.summary import summary

    from convzoo.network.pretrained import list_pretrained

    rows = []
    for name in list_models():
        with torch.device("meta"):
            network = create_model(name)
        table = summary(network)
        rows.append({
            "model": name,
            "params": table.total_params,
            "mflops": table.total_flops / 1e6,
            "input": "x".join(map(str, (network.in_channels, *network.input_size))),
            "outputs": ", ".join(f"{i['module']} {i['num_chs']}" for i in network.feature_info),
            "description": _description(name),
            "weights": ", ".join(f"{e['name']} {e['tag']} {100 * e['test_acc']:.2f}%" for e in list_pretrained(name)),
        })
    return rows
