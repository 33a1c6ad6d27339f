"""Composing the repo's Hydra configs outside ``train.py`` (CLI helpers, tests, notebooks).

[`compose`][convzoo.config.compose] answers a bad override with one [`ConfigError`][convzoo.errors.ConfigError] line (the
closest valid names included) instead of Hydra's multi-line report, and understands
``resume=<run_dir>``: the run's own recorded overrides come first, so a resumed run is the same
run (see [`resume_overrides`][convzoo.config.resume_overrides]).

Examples:
    >>> cfg = compose(["model=convmixer", "model.dim=128"])
    >>> cfg.model.dim
    128
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from convzoo.errors import ConfigError, at, one_line, suggest

__all__ = ["config_dir", "compose", "mixed_precision", "model_config", "override_key", "resume_overrides", "RESUME_KEY"]

#: The override that continues a run in its own directory: ``resume=<run_dir>``.
RESUME_KEY = "resume"
_GRAMMAR = "https://hydra.cc/docs/advanced/override_grammar/basic/"
_LOCATIONS = ("hydra.run.dir", "paths.output_dir")  # where a resumed run writes: under train.py, and otherwise


def mixed_precision(accelerator: str = "cpu") -> str:
    """The Lightning precision a trainer config gets from ``${mixed_precision:<accelerator>}``.

    ``bf16-mixed`` on a GPU and on a CPU that computes bf16 natively (AVX-512 BF16 or AMX), where
    bf16 convolutions run several times faster than fp32; ``32-true`` on any other CPU (AVX2 alone),
    where oneDNN emulates bf16 and a bf16 conv runs several times slower than the fp32 one.

    Args:
        accelerator: the trainer's ``accelerator``: ``cpu``, ``gpu``, ``cuda`` or ``auto`` (a GPU if
            torch sees one).

    Returns:
        ``"bf16-mixed"`` or ``"32-true"``.

    Examples:
        >>> mixed_precision("gpu")
        'bf16-mixed'
        >>> mixed_precision("cpu") in ("bf16-mixed", "32-true")
        True
    """
    import torch

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed"
    return "bf16-mixed" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "32-true"


if not OmegaConf.has_resolver("mixed_precision"):
    OmegaConf.register_new_resolver("mixed_precision", mixed_precision)


def config_dir() -> Path:
    """The config tree: ``$CONVZOO_CONFIG_DIR``, else the ``configs/`` beside the package (a source
    checkout), else the ``convzoo.configs`` package an installed wheel carries."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if os.environ.get("CONVZOO_CONFIG_DIR"):
        path = Path(os.environ["CONVZOO_CONFIG_DIR"])
    elif (checkout / "train.yaml").is_file():
        path = checkout
    else:
        path = Path(str(resources.files("convzoo.configs")))
    if not (path / "train.yaml").is_file():
        raise ConfigError(
            f"no Hydra config tree at {path} (looked for train.yaml). Reinstall convzoo (its wheel carries the "
            f"configs as convzoo.configs) or set CONVZOO_CONFIG_DIR to a folder holding train.yaml and its groups."
        )
    return path


def override_key(override: str) -> str:
    """The dotted key an override sets: the one parser of an override's key, for every caller.

    Examples:
        >>> override_key("+trainer.max_epochs=3"), override_key("~callbacks.ema")
        ('trainer.max_epochs', 'callbacks.ema')
    """
    return override.split("=", 1)[0].lstrip("+~")


def override_value(override: str) -> object:
    """The value an override sets, as Hydra parses it (quotes removed, ``null`` is None): the one parser
    of an override's value, for every caller.

    Examples:
        >>> override_value("model.dropout=0.0"), override_value("depth=56"), override_value("act='relu'")
        (0.0, 56, 'relu')
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).value()
    except HydraException as error:
        raise _parse_error(override, str(error)) from None


def _parse_error(override: str, message: str) -> ConfigError:
    return at(override, f"cannot parse this override ({message.splitlines()[0]}). "
                        f"Quote values holding special characters (key='a,b'); see {_GRAMMAR}")


def _quoted(value: str) -> str:
    """A string as a quoted Hydra override value (paths may hold spaces, commas or '=')."""
    return "'" + value.replace("'", "\\'") + "'"


def resume_overrides(overrides: Sequence[str], hydra_run: bool = False) -> list[str]:
    """Expand ``resume=<run_dir>`` into the overrides that continue that run; others pass through.

    The run's recorded overrides (``<run_dir>/.hydra/overrides.yaml``) come first and the ones
    given now after them, so ``resume=<run_dir> trainer.max_epochs=20`` extends a run. The run
    directory becomes the output directory (``hydra.run.dir`` under ``train.py``,
    ``paths.output_dir`` otherwise); ``train()`` then continues from its ``checkpoints/last.ckpt``.

    Examples:
        >>> resume_overrides(["model=plain", "seed=1"])
        ['model=plain', 'seed=1']
    """
    given = [o for o in overrides if override_key(o) == RESUME_KEY]
    value = override_value(given[-1]) if given else None
    if value in (None, ""):
        return list(overrides)
    run_dir = Path(str(value)).expanduser().resolve()
    if any(override_key(o) in _LOCATIONS and override_value(o) == str(run_dir) for o in overrides):
        return list(overrides)  # expanded already
    recorded_file = run_dir / ".hydra" / "overrides.yaml"
    if not run_dir.is_dir():
        raise ConfigError(f"resume={value}: no such run directory. Give the folder a run printed as its "
                          f"'run directory' (outputs/<date>/<time>, or multirun/<date>/<time>/<job>).")
    if not recorded_file.is_file():
        raise ConfigError(f"resume={value}: {run_dir} is not a train.py run directory (it has no .hydra/overrides.yaml). "
                          f"To continue from a checkpoint file instead, pass ckpt_path=<file> with the run's overrides.")
    # unresolved: an override may hold an interpolation (dirpath=${paths.output_dir}/...) meant for the run's config
    recorded = [str(o) for o in OmegaConf.to_container(OmegaConf.load(recorded_file), resolve=False)]
    kept = [o for o in recorded if override_key(o) not in (RESUME_KEY, "ckpt_path", "overwrite")]  # how it started, not the run
    now = [o for o in overrides if override_key(o) != RESUME_KEY]
    location = _LOCATIONS[0] if hydra_run else _LOCATIONS[1]
    return [*kept, *now, f"{RESUME_KEY}={_quoted(str(run_dir))}", f"{location}={_quoted(str(run_dir))}"]


def _unknown_key(full_key: str, overrides: Sequence[str], config_name: str) -> ConfigError:
    """``trainer.max_epoch=3`` -> ``trainer has no key 'max_epoch'. Did you mean 'max_epochs'? ...``."""
    from hydra.utils import get_object

    from convzoo.arguments import target_signature

    dotted = re.sub(r"\[(\d+)\]", r".\1", full_key)
    override = next((o for o in overrides if override_key(o) == dotted), dotted)
    parent, _, leaf = dotted.rpartition(".")
    try:
        cfg = hydra_compose(config_name=config_name, overrides=[o for o in overrides if o != override])
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except (HydraException, OmegaConfBaseException):
        node = None
    keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    arguments: list[str] = []
    if isinstance(node, DictConfig) and node.get("_target_"):
        try:
            arguments = list(target_signature(get_object(node._target_))[0])
        except Exception:  # an unimportable target is reported when the config is checked
            arguments = []
    where = parent or "the config"
    if leaf in arguments:
        return at(override, f"{where} does not set {leaf!r} (an argument of {node._target_}); "
                            f"add it with +{override.lstrip('+')}.")
    shown = f" Its keys: {', '.join(k for k in keys if not k.startswith('_'))}." if keys else ""
    closest = suggest(leaf, dict.fromkeys([*keys, *arguments]))
    return at(override, f"{where} has no key {leaf!r}.{closest}{shown} "
                        f"(A key the config does not have can be added with +{override.lstrip('+')}.)")


def _composition_error(error: Exception, overrides: Sequence[str], config_name: str) -> ConfigError:
    """Hydra's composition error as one line that names the override and the fix."""
    if isinstance(error, MissingConfigException) and error.options is not None and error.missing_cfg_file:
        group, _, name = error.missing_cfg_file.rpartition("/")
        return at(f"{group}={name}", f"there is no config {name!r} in the {group!r} group."
                                     f"{suggest(name, error.options)} Available: {', '.join(error.options)}.")
    if isinstance(error, OverrideParseException):
        return _parse_error(error.override, error.message)
    cause = error.__cause__
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and getattr(cause, "full_key", None):
        return _unknown_key(cause.full_key, overrides, config_name)
    return ConfigError(one_line(error))


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose ``config_name`` with command-line style ``overrides``, exactly as ``train.py`` would.

    ``resume=<run_dir>`` is expanded first ([`resume_overrides`][convzoo.config.resume_overrides]). A bad override raises a
    [`ConfigError`][convzoo.errors.ConfigError] naming it, with the closest valid names.
    """
    overrides = resume_overrides(overrides)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            return hydra_compose(config_name=config_name, overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as error:
            raise _composition_error(error, overrides, config_name) from None


def model_config(arguments: Sequence[str]) -> tuple[DictConfig, DictConfig | None]:
    """The model a command line names, and the training config it was composed in (``None`` for a file).

    Either a spec file with ``key=value`` overrides (``configs/model/unet.yaml width=32``) or Hydra
    overrides of the training config (``model=convmixer model.dim=512``).
    """
    from omegaconf import OmegaConf

    if arguments and arguments[0].endswith((".yaml", ".yml")):
        from convzoo.specs.parse import read_spec_file

        return OmegaConf.merge(read_spec_file(arguments[0]), OmegaConf.from_dotlist(list(arguments[1:]))), None
    cfg = compose(arguments)
    return cfg.model, cfg
