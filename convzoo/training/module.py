"""The LightningModule: any convzoo network as a CIFAR-style image classifier.

Examples:
    Inference in another project, from a training run's checkpoint:

    ```python
    from convzoo.training.module import load_model
    net = load_model("outputs/2026-11-22/12-00-00/checkpoints/best.ckpt")  # eval-mode ConvNet
    probabilities = net(images).softmax(-1)   # images normalised with the run's mean/std
    ```

The class names and normalisation statistics travel in the checkpoint too:
``ImageClassifier.load_from_checkpoint(path).hparams.classes`` (``.input_mean``, ``.input_std``).
Both read the file as data (``weights_only=True``), so a checkpoint from anywhere runs no code when
loaded; ``weights_only=False`` (a file you trust) and ``allow_imports=True`` (a spec that imports a
package's blocks) are the opt-ins, by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from convzoo._version import __version__
from convzoo.data.augment import TTA_MODES, tta_views
from convzoo.layers import NORM_TYPES
from convzoo.network.build import ConvNet, build_model
from convzoo.specs.resolve import LayerGraph
from convzoo.errors import ConfigError, suggest
from convzoo.weight_init import InitRecord, apply_data_init, apply_init_config
from convzoo.network.weights import read_checkpoint_file, read_checkpoint_spec

__all__ = ["ImageClassifier", "METRICS", "load_model", "make_optimizer", "model_error"]

METRICS = ("train/loss", "train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc")
"""What ImageClassifier logs (the names a callback's ``monitor`` may use)."""
#: Set while load_from_checkpoint rebuilds a module, whose weights then come from the checkpoint.
_RESTORING: ContextVar[bool] = ContextVar("convzoo_restoring", default=False)


def check_logits_output(network: ConvNet) -> None:
    """The rule every network an image classifier trains follows: one output, class logits ``(batch, num_classes)``.

    Args:
        network: a built network.

    Raises:
        ConfigError: naming its outputs and their shapes at its input size, and the fix.

    Examples:
        >>> from convzoo import build_model
        >>> check_logits_output(build_model({"num_classes": 10, "layers": [{"block": "conv", "out_channels": 8},
        ...                                                               {"block": "classifier"}]}))
        >>> check_logits_output(build_model({"layers": [{"block": "conv", "out_channels": 8, "stride": 2}]}))
        Traceback (most recent call last):
        ...
        convzoo.errors.ConfigError: model '' returns 0 (8 channels, reduction 2): it maps 3x32x32 images to outputs of shape (8, 16, 16), not one logit per class; an image classifier trains a network whose one output is class logits (batch, num_classes): end the spec with a classifier layer ({block: classifier}).
    """
    if len(network.outputs) == 1 and network.feature_info.reduction() == [None]:
        if network.feature_info[0]["num_chs"] < 2:
            raise ConfigError(f"model.num_classes={network.feature_info[0]['num_chs']}: a classifier needs at least 2 "
                              f"classes (one logit each); set model.num_classes to the data's number of classes.")
        return
    height, width = network.input_size
    returns = ", ".join(f"{i['module']} ({i['num_chs']} channels, reduction {i['reduction']})" for i in network.feature_info)
    shapes = ", ".join(str(_output_shape(info, height, width)) for info in network.feature_info)
    raise ConfigError(
        f"model {network.spec.get('name') or ''!r} returns {returns}: it maps {network.in_channels}x{height}x{width} "
        f"images to outputs of shape {shapes}, not one logit per class; an image classifier trains a network whose "
        f"one output is class logits (batch, num_classes): end the spec with a classifier layer ({{block: classifier}})."
    )


def _output_shape(info: Mapping[str, Any], height: int, width: int) -> tuple[int, ...]:
    """An output's shape (without the batch) from its ``feature_info`` record, for images of ``height`` x ``width``."""
    if info["reduction"] is None:
        return (info["num_chs"],)
    return (info["num_chs"], round(height / info["reduction"]), round(width / info["reduction"]))


def model_error(error: ConfigError) -> ConfigError:
    """``error`` from checking or building a model spec, named as a key of the training config's ``model``.

    The static check ([`check_config`][convzoo.training.config_checks.check_config]) and the build ([`ImageClassifier`][convzoo.training.module.ImageClassifier])
    name their errors alike: a message that starts with a spec key gets ``model.`` in front of it, any other
    ``model: ``.

    Examples:
        >>> str(model_error(ConfigError("layers[0] 'stem' (block 'conv'): kernel_size=0 is out of range")))
        "model.layers[0] 'stem' (block 'conv'): kernel_size=0 is out of range"
        >>> str(model_error(ConfigError("no layers")))
        'model: no layers'
    """
    # "layers[0] ..." and "dim=0 is used by layers[0] ..." name a key of the model config
    named = re.match(r"layers\[|\w+=", str(error))
    return ConfigError(f"model.{error}" if named else f"model: {error}")


def make_optimizer(factory: Callable[..., Optimizer], model: nn.Module, norm_bias_lr_scale: float = 1.0) -> Optimizer:
    """Build ``factory(param_groups)``; the biases (shifts) of norm layers get ``lr * norm_bias_lr_scale``.

    Their weight decay is divided by the same factor, so the decoupled decay ``lr * weight_decay``
    (what actually shrinks a weight each step) is the same for every parameter, as in airbench.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    if norm_bias_lr_scale == 1.0:
        return factory(trainable)
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, NORM_TYPES) and getattr(m, "bias", None) is not None}
    # named, so LearningRateMonitor logs lr-<Optimizer>/weights and lr-<Optimizer>/norm_biases
    optimizer = factory([
        {"params": [p for p in trainable if id(p) not in norm_biases], "name": "weights"},
        {"params": [p for p in trainable if id(p) in norm_biases], "name": "norm_biases"},
    ])
    boosted = optimizer.param_groups[1]
    boosted["lr"] *= norm_bias_lr_scale
    boosted["weight_decay"] = boosted.get("weight_decay", 0.0) / norm_bias_lr_scale
    return optimizer


class ImageClassifier(L.LightningModule):
    """Cross-entropy training of a network built from a model spec, with top-1 accuracy.

    Args:
        model: the model spec (see [`convzoo.network.build`][convzoo.network.build]), or the spec resolved already
            (a [`LayerGraph`][convzoo.specs.resolve.LayerGraph]: not resolved again); stored in the checkpoint, so
            ``ImageClassifier.load_from_checkpoint(path)`` rebuilds the network alone.
        optimizer: ``optimizer(param_groups) -> Optimizer`` (a Hydra ``_partial_``).
        scheduler: ``scheduler(optimizer, total_steps) -> LRScheduler``, stepped every batch.
        label_smoothing: cross-entropy label smoothing.
        norm_bias_lr_scale: LR multiplier for the biases of norm layers (see [`make_optimizer`][convzoo.training.module.make_optimizer]).
        tta: test-time augmentation: ``none``, ``flip`` or ``flip_translate``.
        channels_last: keep weights in channels-last memory format (fast convs on AMX CPUs and tensor cores).
        compile: wrap the network in ``torch.compile``.
        classes: the data's class names, kept in the checkpoint (``hparams``) so the trained network
            can be used without the training data.
        input_mean: the per-channel normalisation mean its images were fed with (kept likewise).
        input_std: the per-channel normalisation standard deviation (kept likewise).
        init: the weight-init config (``configs/init/*.yaml``, see [`apply_init_config`][convzoo.weight_init.apply.apply_init_config]),
            applied here, so ``ImageClassifier(spec, init=cfg)`` is the network a run trains; kept in the
            checkpoint. Layers fitted to data (the whitening stem) are fitted to ``data_init_images``
            training images of ``trainer.datamodule`` when fitting starts (not when resuming: those
            weights come from the checkpoint). ``init_record`` says what every parameter got.

    Examples:
        >>> from functools import partial
        >>> spec = {"in_channels": 3, "num_classes": 10, "layers": [
        ...     {"block": "conv_norm_act", "out_channels": 8}, {"block": "classifier"}]}
        >>> module = ImageClassifier(spec, optimizer=partial(torch.optim.SGD, lr=0.1))
        >>> module(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        model: Mapping[str, Any] | LayerGraph,
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., LRScheduler] | None = None,
        label_smoothing: float = 0.0,
        norm_bias_lr_scale: float = 1.0,
        tta: str = "none",
        channels_last: bool = True,
        compile: bool = False,
        classes: Sequence[str] | None = None,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        init: Mapping[str, Any] | str | None = None,
        data_init_images: int = 5000,
    ):
        super().__init__()
        if tta not in TTA_MODES:
            raise ConfigError(f"module.tta={tta!r} is not known; use one of {', '.join(TTA_MODES)}."
                              f"{suggest(str(tta), TTA_MODES)}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"module.label_smoothing={label_smoothing} must be in [0, 1); 0.1 is usual, "
                              f"0 turns it off.")
        if not norm_bias_lr_scale > 0:
            raise ConfigError(f"module.norm_bias_lr_scale={norm_bias_lr_scale} must be > 0 (1: the same LR as "
                              f"every other parameter).")
        if not data_init_images >= 1:
            raise ConfigError(f"data_init_images={data_init_images} must be at least 1 (e.g. 5000): the number of "
                              f"training images that data-dependent layers (the whitening stem) are fitted to.")
        try:
            network = build_model(model)  # the run's one build: check_config only resolves the spec
        except ConfigError as error:
            raise model_error(error) from None
        check_logits_output(network)
        # The checkpoint keeps the spec as built (resolved, defaults filled, variables dropped), so
        # it rebuilds the same network without the config tree it came from.
        model = network.spec
        if isinstance(init, DictConfig):  # plain containers in the checkpoint
            init = OmegaConf.to_container(init, resolve=True)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.model: ConvNet = network
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._compiled = False
        num_classes = self.model.num_classes or self.model.out_channels
        # The epoch's running training loss and accuracy are checkpointed (persistent), so an epoch
        # resumed in the middle reports the same averages as one that ran through.
        self.train_loss = MeanMetric(nan_strategy="disable")  # "disable": no NaN check, so no host sync per step
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        for metric in (self.train_loss, self.train_acc):
            metric.persistent(True)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        # A module rebuilt by load_from_checkpoint gets every weight from the checkpoint: initialising it
        # would be wasted work (and an init=pretrained file may be gone by then).
        self.init_record: InitRecord | None = None if _RESTORING.get() else apply_init_config(self.model, init)
        self._data_init_done = self.init_record is None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, weights_only: bool = True, allow_imports: bool = False,
                             **kwargs: Any) -> ImageClassifier:
        """Lightning's loader, safe for a file from anywhere: the checkpoint is read as data
        (``weights_only=True``: tensors and plain containers, so it cannot run code), and modules its spec
        names in ``imports:`` are imported only with ``allow_imports=True`` or if imported already
        ([`check_imports_allowed`][convzoo.network.weights.check_imports_allowed]). A file that is missing, not a convzoo checkpoint,
        or pickles anything else is refused in one line naming it.

        ``weights_only=False`` is for a checkpoint you trust that holds other objects (written by your
        own subclass, say): it unpickles them, which runs any code they name. A checkpoint written by an
        earlier convzoo gets its spec in today's form first; the init config is not applied again (the
        weights are the checkpoint's). Local files only: download a remote one first.
        """
        trusted = ("If you trust the file and its source, pass weights_only=False (to load_model or "
                   "load_from_checkpoint): that runs what it pickles.")
        described = f"checkpoint {str(checkpoint_path)!r}"
        if "model" in kwargs:  # the caller rebuilds the network from its own spec: only the file is checked
            read_checkpoint_file(checkpoint_path, described, weights_only=weights_only,
                                 fix="Pass a run's checkpoints/best.ckpt or last.ckpt.", trusted=trusted)
        else:
            _, kwargs["model"] = read_checkpoint_spec(checkpoint_path, described, weights_only=weights_only,
                                                      allow_imports=allow_imports, trusted=trusted)
        # Lightning reads the file again itself (weights-only too)
        restoring = _RESTORING.set(True)
        try:
            return super().load_from_checkpoint(checkpoint_path, map_location=map_location, hparams_file=hparams_file,
                                                strict=strict, weights_only=weights_only, **kwargs)
        finally:
            _RESTORING.reset(restoring)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the convzoo version that wrote the checkpoint (``convzoo_version``)."""
        checkpoint["convzoo_version"] = __version__

    def on_fit_start(self) -> None:
        """Fit data-dependent layers (the whitening stem) to the training images, once, unless resuming; a module
        loaded from a checkpoint records every parameter as the checkpoint's."""
        if self.init_record is None:  # loaded from a checkpoint, then fitted: every weight is the checkpoint's
            self.init_record = InitRecord.measure(
                self.model, {id(p): ("checkpoint", {}) for p in self.model.parameters()}, {"scheme": "checkpoint"})
        # Data-dependent init needs the training images, which only the trainer's data module has; a
        # resumed run (ckpt_path) has those weights already, restored just before this hook.
        if not self._data_init_done and self.trainer.ckpt_path is None:
            apply_data_init(self.model, self._data_init_images, self.init_record)
        self._data_init_done = True  # once: a later fit continues from the trained weights

    def _data_init_images(self) -> torch.Tensor:
        """The first ``data_init_images`` training images, normalised as the network sees them."""
        datamodule = self.trainer.datamodule
        if not hasattr(datamodule, "train_images") or not hasattr(datamodule, "eval_transform"):
            raise ConfigError(
                f"the network has layers fitted to data (e.g. the whitening stem), which need the training images: "
                f"fit it with trainer.fit(module, datamodule=...) and a convzoo data module (got "
                f"{type(datamodule).__name__}), or use a stem that is not fitted to data."
            )
        return datamodule.eval_transform(datamodule.train_images[: self.hparams.data_init_images])

    def configure_model(self) -> None:
        """With ``compile=True``, compile the network in place (its parameter names, and so checkpoints, unchanged)."""
        if self.hparams.compile and not self._compiled:
            # in place: parameter names (and so checkpoints) stay those of the plain network
            self.model.compile()
            self._compiled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's logits for a normalised batch."""
        return self.model(x)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Cross-entropy (with label smoothing) of one batch; logs ``train/loss`` and ``train/acc``."""
        images, labels = batch
        logits = self(images)
        loss = self._loss(logits, labels)
        self.train_acc(logits, labels)
        self.train_loss(loss.detach())
        # No .item() here: logged tensors stay on the device; the bar reads them every refresh_rate steps.
        self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Logs ``val/loss`` and ``val/acc`` for one batch."""
        images, labels = batch
        logits = self(images)
        self.val_acc(logits, labels)
        self.log("val/loss", self._loss(logits, labels), prog_bar=True, sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Logs ``test/loss`` and ``test/acc`` for one batch, its logits averaged over the ``tta`` views."""
        images, labels = batch
        views = tta_views(images, self.hparams.tta)
        logits = sum(weight * self(view).float() for view, weight in views) / sum(w for _, w in views)
        self.test_acc(logits, labels)
        self.log("test/loss", self._loss(logits, labels), sync_dist=True)
        self.log("test/acc", self.test_acc)

    def on_train_epoch_start(self) -> None:
        # Lightning empties them after logging each epoch; a run resumed from a checkpoint taken at the
        # end of an epoch (before that) must not carry the finished epoch's counts into the next one.
        """Empty the training metrics, so a resumed run does not carry the finished epoch's counts into the next."""
        self.train_loss.reset()
        self.train_acc.reset()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints from before the training metrics were checkpointed: start them empty
        """Give a checkpoint written before the training metrics were checkpointed empty ones."""
        state = checkpoint["state_dict"]
        for name, value in self.state_dict().items():
            if name.startswith(("train_loss.", "train_acc.")):
                state.setdefault(name, value)

    def configure_optimizers(self) -> Any:
        """The optimizer over [`make_optimizer`][convzoo.training.module.make_optimizer]'s parameter groups, and the
        scheduler (stepped every batch) when there is one."""
        if self.optimizer_factory is None:
            raise RuntimeError("ImageClassifier was built without an optimizer; pass optimizer= to train it.")
        optimizer = make_optimizer(self.optimizer_factory, self.model, self.hparams.norm_bias_lr_scale)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_model(checkpoint: str | Path, map_location: str | torch.device = "cpu", weights_only: bool = True,
               allow_imports: bool = False) -> ConvNet:
    """The trained network from a convzoo checkpoint, in eval mode, ready for inference.

    Safe for a file from anywhere (see [`ImageClassifier.load_from_checkpoint`][convzoo.training.module.ImageClassifier.load_from_checkpoint]): it is read as
    data, and its spec's ``imports:`` are imported only with ``allow_imports=True``;
    ``weights_only=False`` runs whatever the file pickles, for a checkpoint you trust.
    """
    module = ImageClassifier.load_from_checkpoint(checkpoint, map_location=map_location, compile=False,
                                                  weights_only=weights_only, allow_imports=allow_imports)
    return module.model.eval()
