"""torch.hub entry points: convzoo's zoo networks with their shipped CIFAR-10 weights.

    net = torch.hub.load("<path to a convzoo checkout>", "resnet20", pretrained=True, source="local")

Each entry is a weight set of ``convzoo/pretrained/manifest.json`` (``convzoo.list_pretrained()``): its model
and overrides, and with ``pretrained=True`` its weights (sha256-checked safetensors; nothing is unpickled).
Keyword arguments override the model's config (``num_classes=100`` builds a new head, which then keeps its
init: only the tensors that fit are loaded).
"""

dependencies = ["torch", "omegaconf", "hydra", "safetensors"]


def _create(name: str, pretrained: bool, **overrides):
    from convzoo import create_model, list_pretrained
    from convzoo.network.pretrained import DATA_KEYS, load_pretrained

    entry = next(entry for entry in list_pretrained() if entry["name"] == name)
    network = create_model(entry["model"], **{**entry["overrides"], **overrides})
    if pretrained:
        load_pretrained(network, entry, strict=not set(overrides) & set(DATA_KEYS))
        network.eval()
    return network


def resnet20(pretrained: bool = False, **overrides):
    """ResNet-20 (He et al. 2016, option A shortcuts), 269,722 parameters; CIFAR-10 weights with ``pretrained=True``."""
    return _create("resnet20", pretrained, **overrides)


def resnet56(pretrained: bool = False, **overrides):
    """ResNet-56 (He et al. 2016, option A shortcuts), 853,018 parameters; CIFAR-10 weights with ``pretrained=True``."""
    return _create("resnet56", pretrained, **overrides)


def airbench_half(pretrained: bool = False, **overrides):
    """airbench94's network at half width (32/128/128 channels), 498,104 parameters; CIFAR-10 weights with
    ``pretrained=True``."""
    return _create("airbench_half", pretrained, **overrides)


def convmixer_256_8(pretrained: bool = False, **overrides):
    """ConvMixer-256/8 (Trockman & Kolter, kernel 5, patch 2), 594,186 parameters; CIFAR-10 weights with
    ``pretrained=True``."""
    return _create("convmixer_256_8", pretrained, **overrides)


def mobilenetv2(pretrained: bool = False, **overrides):
    """MobileNetV2 x1.0 (Sandler et al. 2018, CIFAR strides), 2,296,922 parameters; CIFAR-10 weights with
    ``pretrained=True``."""
    return _create("mobilenetv2", pretrained, **overrides)


def wrn40_1(pretrained: bool = False, **overrides):
    """WRN-40-1 (Zagoruyko & Komodakis 2016, trained without dropout), 563,930 parameters; CIFAR-10 weights with
    ``pretrained=True``."""
    return _create("wrn40_1", pretrained, **overrides)
