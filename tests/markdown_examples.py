"""Run the code blocks of a Markdown page as a reader would, top to bottom.

What each fenced block does when a page is run:

- ```` ```python ```` and ```` ```bash ```` blocks run in order, in one working folder per page, so a
  later block sees what an earlier one wrote: Python blocks share one namespace, bash blocks run
  with ``bash -e -o pipefail``. The folder holds links to the checkout's ``configs/``,
  ``examples/``, ``benchmarks/``, ``train.py`` and ``hubconf.py``, so commands read exactly as in a checkout, and
  whatever they write stays out of it.
- A block with ``title="path"`` (mkdocs-material's file-name header) is a file: when the checkout
  has that file, the block must be its exact text (so the page cannot drift from it); otherwise
  the file is written into the working folder (``my_project/blocks.py``) for later blocks to use.
- ```` ```text ````, ```` ```console ````, ```` ```yaml ```` (without a title) and the rest are
  shown, not run.

HTML comments on the lines right above a fence adjust how it runs; each names its reason, so a
page says in the open why a block is not run as written:

- ``<!-- skip: REASON -->``: not run (REASON must say why: it needs a GPU, a cluster, ...).
- ``<!-- train-overrides: KEY=VALUE ... -->``: appended to every ``train.py`` / ``convzoo-train``
  command of the block (Hydra's last override wins), to run a long training as a tiny one.
- ``<!-- expect-exit: N -->``: the block must end with exit code N (an error example).
- ``<!-- expect-output: TEXT -->``: the block's output must contain TEXT.

An unknown marker, or a marker with nothing after its colon, is an error.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINKED = ("configs", "examples", "benchmarks", "train.py", "hubconf.py")
RUNNABLE = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}  # language -> runner
MARKERS = ("skip", "train-overrides", "expect-exit", "expect-output")
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>[^`\n]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<name>[\w-]+)\s*:(?P<value>.*?)-->\s*$")
_TRAIN = re.compile(r"((?:python3? )?(?:\S*/)?train\.py|convzoo-train)\b")


class ExampleError(AssertionError):
    """A block of a page did not do what the page says (or the page's markup is wrong)."""


@dataclass
class Block:
    """One fenced code block: where it is, its language, its ``title`` and the markers above it."""

    page: Path
    line: int
    language: str
    title: str | None
    text: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO) if self.page.is_relative_to(REPO) else self.page}:{self.line}"

    @property
    def runs(self) -> bool:
        return "skip" not in self.markers and (self.title is not None or self.language in RUNNABLE.values())


def _attributes(info: str) -> tuple[str, str | None]:
    language, _, rest = info.strip().partition(" ")
    title = re.search(r'title="([^"]+)"', rest)
    return language.strip().lower(), title.group(1) if title else None


def parse(page: Path) -> list[Block]:
    """Every fenced block of ``page`` with the markers written right above it."""
    lines = page.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening or not opening.group("info").strip():
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        language, title = _attributes(opening.group("info"))
        markers, above = {}, index - 1
        while above >= 0 and (marker := _MARKER.match(lines[above])):
            name, value = marker.group("name"), marker.group("value").strip()
            if name not in MARKERS:
                raise ExampleError(f"{page}:{above + 1}: unknown marker {name!r}; markers: {', '.join(MARKERS)}")
            if not value:
                raise ExampleError(f"{page}:{above + 1}: marker {name!r} needs a value (skip: say why)")
            markers[name] = value
            above -= 1
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        if end == len(lines):
            raise ExampleError(f"{page}:{index + 1}: the code block is never closed")
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[index + 1:end])
        blocks.append(Block(page, index + 1, RUNNABLE.get(language, language), title, body + "\n", markers))
        index = end + 1
    return blocks


def with_train_overrides(script: str, overrides: str) -> str:
    """Append ``overrides`` to every ``train.py`` / ``convzoo-train`` command line of ``script``
    (a command continued with ``\\`` gets them after its last line)."""
    out, pending = [], False
    for line in script.splitlines():
        pending = pending or bool(_TRAIN.search(line.split("#", 1)[0]))
        if pending and not line.rstrip().endswith("\\"):
            code, hash_, comment = line.partition(" #")
            line = f"{code.rstrip()} {overrides}" + (f"  #{comment}" if hash_ else "")
            pending = False
        out.append(line)
    return "\n".join(out) + "\n"


def prepare_folder(folder: Path) -> Path:
    """Link the checkout's config tree, examples, benchmarks and ``train.py`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = folder / name
        if not link.exists():
            link.symlink_to(REPO / name)
    return folder


def _environment(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    env["MPLBACKEND"] = "Agg"
    return env


def _check_outcome(block: Block, code: int, output: str) -> None:
    expected = int(block.markers.get("expect-exit", 0))
    if code != expected:
        raise ExampleError(f"{block.where}: the {block.language} block exited with {code}, the page expects "
                           f"{expected}.\n--- block ---\n{block.text}--- output (last 3000 characters) ---\n{output[-3000:]}")
    wanted = block.markers.get("expect-output")
    if wanted and wanted not in output:
        raise ExampleError(f"{block.where}: the output does not contain {wanted!r}.\n--- output ---\n{output[-3000:]}")


def _run_python(block: Block, namespace: dict, folder: Path) -> None:
    import contextlib
    import io
    import traceback

    buffer = io.StringIO()
    code = 0
    previous = Path.cwd()
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    try:
        with contextlib.redirect_stdout(buffer):
            exec(compile(block.text, block.where, "exec"), namespace)  # noqa: S102 -- the page's own example
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except Exception:  # noqa: BLE001 -- reported with the block that raised it
        code = 1
        buffer.write(traceback.format_exc())
    finally:
        sys.path.remove(str(folder))
        os.chdir(previous)
    _check_outcome(block, code, buffer.getvalue())


def _run_bash(block: Block, folder: Path, timeout: float) -> None:
    script = block.text
    if "train-overrides" in block.markers:
        script = with_train_overrides(script, block.markers["train-overrides"])
    try:
        result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=folder, env=_environment(folder),
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as late:
        raise ExampleError(f"{block.where}: the bash block ran past {timeout:.0f} s") from late
    _check_outcome(block, result.returncode, result.stdout + result.stderr)


def _write_or_compare(block: Block, folder: Path) -> None:
    checkout_file = REPO / block.title
    if checkout_file.is_file():
        if checkout_file.read_text() != block.text:
            raise ExampleError(f"{block.where}: the block titled {block.title!r} is not that file's text; "
                               f"copy the file into the page again")
        return
    target = folder / block.title
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(block.text)


def run_page(page: Path, folder: Path, timeout: float = 900.0) -> list[Block]:
    """Run every block of ``page`` in ``folder`` (see the module docstring); return the blocks that ran.

    Raises:
        ExampleError: naming the page, the line and what went wrong.
    """
    prepare_folder(folder)
    namespace: dict = {"__name__": "__main__"}
    ran = []
    for block in parse(page):
        if not block.runs:
            continue
        if block.title is not None:
            _write_or_compare(block, folder)
        elif block.language == "python":
            _run_python(block, namespace, folder)
        else:
            _run_bash(block, folder, timeout)
        ran.append(block)
    return ran


def needs_processes(page: Path) -> bool:
    """Whether running the page starts commands (slow: each imports torch and Lightning)."""
    return any(block.runs and block.title is None and block.language == "bash" for block in parse(page))
