"""docs/reference/configs.md names every option of every config group, and only options that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
PAGE = REPO / "docs" / "reference" / "configs.md"


def _groups() -> dict[str, set[str]]:
    """Each config group (a folder of configs/, ``hydra/launcher`` included) and its option names."""
    groups: dict[str, set[str]] = {}
    for file in CONFIGS.rglob("*.yaml"):
        if file.parent != CONFIGS:
            groups.setdefault(file.parent.relative_to(CONFIGS).as_posix(), set()).add(file.stem)
    return groups


def _sections() -> dict[str, str]:
    """The page's ``## heading`` sections, by heading."""
    parts = re.split(r"^## (.+)$", PAGE.read_text(), flags=re.M)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2])}


def _options(section: str) -> set[str]:
    """The options a section's table lists: the first cell of each row."""
    return set(re.findall(r"^\| `([\w./-]+)` \|", section, flags=re.M))


def test_every_group_has_a_section():
    assert sorted(set(_groups()) - set(_sections())) == []


@pytest.mark.parametrize("group", sorted(_groups()))
def test_the_section_lists_exactly_the_groups_options(group: str):
    listed = _options(_sections()[group])
    assert sorted(_groups()[group] - listed) == [], f"configs/{group}/ has options the page does not name"
    assert sorted(listed - _groups()[group]) == [], f"the page names options configs/{group}/ does not have"


def test_the_defaults_line_is_train_yaml_s():
    import yaml

    defaults = {key: value for entry in yaml.safe_load((CONFIGS / "train.yaml").read_text())["defaults"]
                if isinstance(entry, dict) for key, value in entry.items()}
    shown = re.search(r"```text\n(.*?)```", PAGE.read_text(), re.S).group(1)
    expected = {key: "null" if value is None else value for key, value in defaults.items()}
    assert dict(re.findall(r"([\w/]+): (\w+)", shown)) == expected
