"""``python -m convzoo list [blocks|models]``, ``summary [overrides]`` and ``compare RUN_DIR...``: looking at
what convzoo holds and what runs left, without training.

Each command is a subparser whose ``run(args) -> exit status`` does the work (see `convzoo.cli.main`).
"""

from __future__ import annotations

import argparse
import inspect

from convzoo.registry import ACTIVATIONS, BLOCKS, INITS, NORMS, POOLS, Registry

__all__ = ["add_commands", "list_registries", "list_zoo", "summary_text"]


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``list``, ``summary`` and ``compare`` on ``python -m convzoo``'s subcommands."""
    listing = commands.add_parser("list", help="registered blocks, norms, activations and init schemes with their "
                                              "arguments (list blocks, the default), or the model zoo (list models)")
    listing.add_argument("what", nargs="?", choices=["blocks", "models"], default="blocks")
    listing.set_defaults(run=lambda args: _print(list_zoo() if args.what == "models" else list_registries()))
    summarise = commands.add_parser("summary", help="per-layer table of a configured model, without training")
    summarise.add_argument(
        "overrides", nargs="*",
        help="Hydra overrides (model=convmixer model.dim=512), or a spec file and key=value overrides (configs/model/unet.yaml width=32)",
    )
    summarise.set_defaults(run=lambda args: _print(summary_text(args.overrides)))
    comparing = commands.add_parser(
        "compare", help="runs side by side: validation curves on one PNG and a table of final metrics"
    )
    comparing.add_argument("runs", nargs="+", help="run directories, or folders of them (a multirun sweep)")
    comparing.add_argument("-o", "--output", help="PNG to write (default: <sweep>/compare.png, else ./compare.png); "
                                                  "an existing PNG there is replaced, a run's record is refused")
    comparing.set_defaults(run=run_compare)


def _print(text: str) -> int:
    """Print a command's text; its exit status is 0."""
    print(text)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """``compare``: the runs' table printed, their curves drawn (`convzoo.runs.compare.compare`)."""
    from convzoo.runs.compare import compare

    return _print(compare(args.runs, args.output)[0])


def _describe(registry: Registry, skip: tuple[str, ...]) -> list[str]:
    lines = []
    aliases = {}
    for alias in registry.names(aliases=True):
        canonical = registry.canonical_name(alias)
        if alias != canonical:
            aliases.setdefault(canonical, []).append(alias)
    for name in registry.names():
        entry = registry.get(name)
        params = [
            p.name if p.default is p.empty else f"{p.name}={p.default!r}"
            for p in inspect.signature(entry).parameters.values()
            if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        doc = (inspect.getdoc(entry) or "").split("\n")[0]
        also = f" (alias {', '.join(aliases[name])})" if name in aliases else ""
        lines.append(f"  {name}({', '.join(params)}){also}" + (f"\n      {doc}" if doc else ""))
    return lines


def list_registries() -> str:
    """Everything that can be named in a config, with its arguments."""
    import convzoo.weight_init  # noqa: F401  (registers the init schemes)
    import convzoo.network.build  # noqa: F401  (registers the built-in blocks)

    sections = [
        ("blocks (model.layers[].block; in_channels is inferred)", BLOCKS, ("in_channels",)),
        ("norms (a block's norm=)", NORMS, ("num_channels",)),
        ("activations (a block's act=)", ACTIVATIONS, ()),
        ("pools (a block's pool=, with pool_size=)", POOLS, ()),
        ("init schemes (init=NAME; init=pytorch_default: none, PyTorch's own init)", INITS, ()),
    ]
    out = []
    for title, registry, skip in sections:
        out += [f"{title}:", *_describe(registry, skip), ""]
    return "\n".join(out).rstrip()


def list_zoo() -> str:
    """Every model config with its parameters and FLOPs (computed, at the config's input size)."""
    from convzoo.network.zoo import model_table

    rows = model_table()
    width = max(len(r["model"]) for r in rows)
    lines = [f"{'model':{width}}  {'params':>11}  {'MFLOPs':>9}  {'input':9}  description"]
    for r in rows:
        lines.append(f"{r['model']:{width}}  {r['params']:>11,}  {r['mflops']:>9,.1f}  {r['input']:9}  {r['description']}")
        if r["weights"]:
            lines.append(f"{'':{width}}  trained weights (name, tag, CIFAR-10 test top-1, single view): {r['weights']}")
    return "\n".join(lines + ["", "sizes by override, e.g. python -m convzoo summary model=resnet_cifar model.depth=110",
                              "trained weights: create_model(name, pretrained=TAG), or init=pretrained init.weights=NAME"])


def summary_text(arguments: list[str]) -> str:
    """Summarise a model: a spec file (``path.yaml [key=value ...]``) or the training config's model
    composed with Hydra overrides (``model=convmixer model.dim=512``)."""
    from convzoo.config import model_config
    from convzoo.network.build import build_model
    from convzoo.network.summary import summary

    spec, _ = model_config(arguments)
    model = build_model(spec)
    return f"model: {spec.get('name', '?')}\n{summary(model)}"
