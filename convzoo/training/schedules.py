"""Learning-rate schedules as ``scheduler(optimizer, total_steps)`` factories, stepped every batch.

Every scheduler config is a partial taking the optimizer and the run's total number of optimizer
steps (known only once the Trainer has seen the data), so one config works for any epoch count.

Examples:
    >>> import torch
    >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> sched = piecewise_linear(opt, total_steps=10, milestones=[0, 0.4, 0.8, 1], values=[0, 1, 0.05, 0])
    >>> [round(sched.get_last_lr()[0], 3) for _ in range(3) if not sched.step()]
    [0.25, 0.5, 0.75]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, MultiStepLR, OneCycleLR

from convzoo.errors import ConfigError

__all__ = ["piecewise_linear", "warmup_cosine", "one_cycle", "step_decay", "constant"]


def _interpolate(x: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    if x <= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return ys[-1]


def piecewise_linear(
    optimizer: Optimizer, total_steps: int, milestones: Sequence[float], values: Sequence[float]
) -> LRScheduler:
    """LR multiplier interpolated linearly between ``values`` at ``milestones`` (fractions of training).

    The ConvMixer CIFAR-10 recipe is ``milestones=[0, 0.4, 0.8, 1]``, ``values=[0, 1, 0.05, 0]``
    (``np.interp`` over epochs ``[0, 2/5, 4/5, 1]`` of ``[0, lr_max, lr_max/20, 0]``).
    """
    if len(milestones) != len(values) or not milestones or list(milestones) != sorted(milestones):
        raise ConfigError(f"scheduler.milestones={list(milestones)} must be increasing fractions of the run, "
                          f"as many as scheduler.values={list(values)}; e.g. milestones=[0, 0.4, 1] values=[0, 1, 0].")
    if any(value < 0 for value in values):
        raise ConfigError(f"scheduler.values={list(values)} are LR multipliers and must be >= 0.")
    return LambdaLR(optimizer, lambda step: _interpolate(step / max(1, total_steps), milestones, values))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup: float = 0.0, final: float = 0.0) -> LRScheduler:
    """Linear warm-up over the first ``warmup`` fraction, then cosine decay to ``final`` x the base LR."""
    if not 0.0 <= warmup < 1.0:
        raise ConfigError(f"scheduler.warmup={warmup} is the warm-up's fraction of the run and must be in [0, 1); "
                          f"e.g. scheduler.warmup=0.05.")
    if final < 0:
        raise ConfigError(f"scheduler.final={final} is the final LR as a fraction of optimizer.lr and must be >= 0.")
    warmup_steps = int(warmup * total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return LambdaLR(optimizer, factor)


def one_cycle(optimizer: Optimizer, total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0,
              final_div_factor: float = 1e4) -> LRScheduler:
    """torch's ``OneCycleLR`` peaking at each group's configured LR.

    Very short runs (a few batches) get at least two warm-up steps, which OneCycleLR needs.
    """
    if total_steps < 4:
        raise ConfigError(f"scheduler one_cycle needs at least 4 optimizer steps, got {total_steps}; "
                          f"train longer or use scheduler=constant.")
    if not 0.0 < pct_start < 1.0:
        raise ConfigError(f"scheduler.pct_start={pct_start} is the rising fraction of the cycle and must be in (0, 1).")
    if not (div_factor > 0 and final_div_factor > 0):
        raise ConfigError(f"scheduler.div_factor={div_factor} and scheduler.final_div_factor={final_div_factor} "
                          f"must be > 0.")
    pct_start = max(pct_start, 2 / total_steps)
    return OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps,
                      pct_start=pct_start, div_factor=div_factor, final_div_factor=final_div_factor)


def step_decay(optimizer: Optimizer, total_steps: int, milestones: Sequence[float] = (0.5, 0.75),
               gamma: float = 0.1) -> LRScheduler:
    """torch's ``MultiStepLR``: the LR times ``gamma`` at each milestone (fractions of the run).

    The classic CIFAR recipes: ResNet (He et al.) and DenseNet divide by 10 at 50% and 75%;
    wide ResNets multiply by 0.2 at 30%, 60% and 80%.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = step_decay(opt, total_steps=8, milestones=[0.5, 0.75], gamma=0.1)
        >>> [round(sched.get_last_lr()[0], 3) for _ in range(8) if not (opt.step() or sched.step())]
        [1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.01]
    """
    if list(milestones) != sorted(milestones) or not all(0.0 < m < 1.0 for m in milestones):
        raise ConfigError(f"scheduler.milestones={list(milestones)} must be increasing fractions of the run in (0, 1).")
    return MultiStepLR(optimizer, milestones=[round(m * total_steps) for m in milestones], gamma=gamma)


def constant(optimizer: Optimizer, total_steps: int) -> LRScheduler:
    """No schedule: the configured LR throughout."""
    return LambdaLR(optimizer, lambda step: 1.0)
