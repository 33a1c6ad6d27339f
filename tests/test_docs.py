"""README and the documentation site, held to the code: every example runs, nothing names an old path,
README stays a front page.

Each page is one test: its blocks run top to bottom as a reader would follow them
(``tests/markdown_examples.py`` says how, and which markers a page may use). Pages that start commands
(each imports torch and Lightning) are ``slow``; those that train read the real CIFAR-10 at
``$CONVZOO_DATA`` like every ``cifar10`` test.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from convzoo._moved import MOVED
from markdown_examples import REPO, ExampleError, needs_processes, run_page, with_train_overrides

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _page_param(page: Path):
    marks = [pytest.mark.slow, pytest.mark.cifar10] if needs_processes(page) else []
    return pytest.param(page, marks=marks, id=str(page.relative_to(REPO)))


@pytest.mark.parametrize("page", [_page_param(page) for page in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path):
    if needs_processes(page) and not os.environ.get("CONVZOO_DATA"):
        pytest.skip("CONVZOO_DATA is not set: the page's commands train on the real CIFAR-10")
    run_page(page, tmp_path / "work")


# --- the runner itself: a broken example must fail -------------------------------------------------

def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text)
    return page


@pytest.mark.parametrize("body, message", [
    ("```python\nraise ValueError('broken example')\n```\n", "broken example"),
    ("```python\nx = 1\n```\n\n```python\nassert x == 2, 'the namespace carries over'\n```\n", "namespace carries over"),
    ("```python title=\"configs/model/plain.yaml\"\nnot: the file\n```\n", "not that file's text"),
    ("<!-- skipp: typo -->\n```python\npass\n```\n", "unknown marker 'skipp'"),
    ("<!-- skip: -->\n```python\npass\n```\n", "needs a value"),
    ("```python\npass\n", "never closed"),
])
def test_a_broken_python_example_fails(tmp_path: Path, body: str, message: str):
    with pytest.raises(ExampleError, match=re.escape(message)):
        run_page(_page(tmp_path, body), tmp_path / "work")


def test_python_blocks_share_a_namespace_and_skipped_blocks_do_not_run(tmp_path: Path):
    page = _page(tmp_path, "```python\nx = 41\n```\n<!-- skip: shows a failure -->\n```python\nraise SystemExit(1)\n```\n"
                           "```python\nx += 1\nopen('out.txt', 'w').write(str(x))\n```\n")
    assert len(run_page(page, tmp_path / "work")) == 2
    assert (tmp_path / "work" / "out.txt").read_text() == "42"


def test_titled_blocks_become_files_for_later_blocks(tmp_path: Path):
    page = _page(tmp_path, '```python title="pkg/mod.py"\nVALUE = 7\n```\n\n```python\nfrom pkg.mod import VALUE\n'
                           'assert VALUE == 7\n```\n')
    run_page(page, tmp_path / "work")


@pytest.mark.slow
def test_a_failing_command_fails_unless_the_page_expects_it(tmp_path: Path):
    with pytest.raises(ExampleError, match="exited with 3"):
        run_page(_page(tmp_path, "```bash\necho start\nexit 3\n```\n"), tmp_path / "a")
    run_page(_page(tmp_path, "<!-- expect-exit: 3 -->\n<!-- expect-output: start -->\n```bash\necho start\nexit 3\n```\n"),
             tmp_path / "b")
    with pytest.raises(ExampleError, match="does not contain 'finish'"):
        run_page(_page(tmp_path, "<!-- expect-output: finish -->\n```bash\necho start\n```\n"), tmp_path / "c")


def test_train_overrides_go_to_the_end_of_each_training_command():
    script = ("python train.py model=convmixer   # a comment\npython -m convzoo summary model=plain\n"
              "python train.py -m model=plain,convmixer \\\n    seed=1\n")
    assert with_train_overrides(script, "trainer.max_epochs=1") == (
        "python train.py model=convmixer trainer.max_epochs=1  # a comment\npython -m convzoo summary model=plain\n"
        "python train.py -m model=plain,convmixer \\\n    seed=1 trainer.max_epochs=1\n")


# --- what the pages say ------------------------------------------------------------------------------

def test_readme_is_a_front_page_with_the_two_quick_start_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    quick_start = re.search(r"## Quick start\n(.*?)\n## ", text, re.S).group(1)
    commands = [line for block in re.findall(r"```bash\n(.*?)```", quick_start, re.S)
                for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2 and commands[1] == "bash .ci/run"


def test_readme_links_into_the_docs_resolve():
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(((?!https?://|#)[^)#\s]+)", text)
    assert links, "README links into the docs"
    assert [link for link in links if not (REPO / link).exists()] == []


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "migration.md"], ids=lambda p: str(p.relative_to(REPO)))
def test_pages_name_no_old_module_path(page: Path):
    import convzoo

    text = page.read_text()
    # convzoo.summary is also the public function convzoo.summary: only a module path can be an old one
    old = [path for path in MOVED if path.split(".", 1)[1] not in convzoo.__all__
           and re.search(rf"\b{re.escape(path)}\b(?![/_])", text)]
    assert old == [], f"{page.name} names moved paths; use {[MOVED[p] for p in old]}"


@pytest.mark.slow
def test_generated_pages_are_what_their_sources_give():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / "docs" / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
