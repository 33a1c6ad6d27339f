"""What the non-finite-loss guard costs per training step, measured in isolation.

The guard's per-step work is host-side bookkeeping (keep the loss tensor, read the LR); every
``check_every_n_steps`` steps it stacks the kept losses and copies them to the host once. This
times both with a real (detached, scalar) loss tensor, so the cost can be set against a step's
time (``benchmarks/throughput.py`` measures those end to end, with and without the guard).

Usage:
    python benchmarks/guard_overhead.py [--steps 20000] [--every 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convzoo.training.divergence import NonFiniteLossGuard  # noqa: E402


class _Strategy:
    @staticmethod
    def reduce_boolean_decision(decision: bool, all: bool = True) -> bool:
        return decision


class _Trainer:
    """The attributes of a Lightning Trainer that the guard reads."""

    current_epoch, global_step, checkpoint_callbacks, strategy = 0, 0, [], _Strategy()
    optimizers = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--every", type=int, default=10, help="check_every_n_steps")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    guard, trainer = NonFiniteLossGuard(check_every_n_steps=args.every), _Trainer()
    loss = torch.tensor(2.3)
    outputs = {"loss": loss}
    per_step = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for step in range(args.steps):
            trainer.global_step = step + 1
            guard.on_train_batch_start(trainer, None, None, step)
            guard.on_train_batch_end(trainer, None, outputs, None, step)
        per_step.append((time.perf_counter() - start) / args.steps)
    median = statistics.median(per_step)
    print(f"guard: {median * 1e6:.2f} us per training step on average (a check every {args.every} steps "
          f"included), median of {args.repeats} x {args.steps} steps")


if __name__ == "__main__":
    main()
