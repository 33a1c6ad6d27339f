"""``python -m convzoo list`` and ``python -m convzoo summary [overrides]``."""

from __future__ import annotations

import argparse
import inspect
import sys

from convzoo.registry import ACTIVATIONS, BLOCKS, INITS, NORMS, Registry


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
    import convzoo.init  # noqa: F401  (registers the init schemes)
    import convzoo.model  # noqa: F401  (registers the built-in blocks)

    sections = [
        ("blocks (model.layers[].block; in_channels is inferred)", BLOCKS, ("in_channels",)),
        ("norms (a block's norm=)", NORMS, ("num_channels",)),
        ("activations (a block's act=)", ACTIVATIONS, ()),
        ("init schemes (init=NAME)", INITS, ()),
    ]
    out = []
    for title, registry, skip in sections:
        out += [f"{title}:", *_describe(registry, skip), ""]
    return "\n".join(out).rstrip()


def print_summary(overrides: list[str]) -> str:
    """Compose the real training config with ``overrides`` and summarise its model."""
    from convzoo.config import compose
    from convzoo.model import build_model
    from convzoo.summary import summary

    cfg = compose(overrides)
    model = build_model(cfg.model)
    return f"model: {cfg.model.get('name', '?')}\n{summary(model)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convzoo", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="registered blocks, norms, activations and init schemes with their arguments")
    summarise = commands.add_parser("summary", help="per-layer table of a configured model, without training")
    summarise.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=convmixer model.dim=512")
    args = parser.parse_args(argv)
    from convzoo.errors import exit_code, report

    try:
        print(list_registries() if args.command == "list" else print_summary(args.overrides))
    except Exception as error:
        if exit_code(error) is None:
            raise  # a bug: keep the traceback
        return report(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
