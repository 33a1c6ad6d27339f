"""The docs' architecture page is held to the tree: its map lists every module of convzoo/ and
nothing else, and its import layers are the imports the code makes, so neither can drift."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = (REPO / "docs" / "architecture.md").read_text()
MAP = re.search(r"^## The module map\n.*?```\n(.*?)```", PAGE, re.S | re.M).group(1)
LAYERS = re.search(r"^## Import layers\n.*?```\n(.*?)```", PAGE, re.S | re.M).group(1)


def _mapped_modules() -> set[str]:
    """Every ``name.py`` and ``name/`` under ``convzoo/`` in the map, as a path (nesting by indentation)."""
    paths, parents = set(), []
    for line in MAP.splitlines():
        match = re.match(r"( *)(\S+(?:\.py|/))(?:\s|$)", line)
        if not match:
            continue
        depth = len(match.group(1)) // 2
        parents[depth:] = [match.group(2)]
        if parents[0] == "convzoo/" and depth > 0:
            paths.add("convzoo/" + "".join(parents[1:]).rstrip("/"))
    return paths


def test_the_map_lists_every_module_and_only_those():
    tree = {str(p.relative_to(REPO).with_suffix("") if p.is_file() else p.relative_to(REPO))
            for p in (REPO / "convzoo").rglob("*") if p.suffix == ".py" or (p / "__init__.py").is_file()}
    mapped = {p.removesuffix(".py") for p in _mapped_modules()}
    assert sorted(tree - mapped) == [], "modules docs/architecture.md's map leaves out"
    assert sorted(mapped - tree) == [], "modules docs/architecture.md's map lists that do not exist"


def _room(module: str) -> str:
    """``convzoo.training.run`` -> ``training/``; ``convzoo.tables`` -> ``tables.py``: how the layers name it."""
    part = module.split(".")[1]
    return f"{part}/" if (REPO / "convzoo" / part).is_dir() else f"{part}.py"


def test_imports_run_down_the_layers():
    layer_of = {room: i for i, line in enumerate(LAYERS.splitlines()) for room in line.split()}
    upward = []
    for path in (REPO / "convzoo").rglob("*.py"):
        relative = path.relative_to(REPO / "convzoo")
        room = f"{relative.parts[0]}/" if len(relative.parts) > 1 else relative.name
        if room not in layer_of:
            assert room in ("__init__.py", "_version.py", "_moved.py"), f"{room} is on no layer"
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]              # from convzoo.x import y
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]   # import convzoo.x
            else:
                continue
            for module in (m for m in modules if m.startswith("convzoo.")):
                if layer_of.get(_room(module), len(layer_of)) < layer_of[room]:
                    upward.append(f"{path.relative_to(REPO)} imports {module}")
    assert upward == []


def test_the_map_names_every_benchmark_and_kernel_source():
    files = [*(REPO / "benchmarks").glob("*.py"), *(REPO / "benchmarks").glob("*.sh"),
             *(REPO / "convzoo" / "ops" / "csrc").iterdir()]
    assert [f.name for f in files if not re.search(rf"\b{re.escape(f.name)}\b", MAP)] == []
