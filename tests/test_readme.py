"""README's worked examples are the files the tests build, so the README cannot drift from them."""

import re
from pathlib import Path

import pytest

from convzoo import build_model

REPO = Path(__file__).resolve().parent.parent
BLOCKS = re.findall(r"```yaml\n# ((?:examples|configs/model)/\S+\.yaml)\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def test_readme_shows_the_resnet_stage_and_unet_examples():
    assert {path for path, _ in BLOCKS} >= {"examples/resnet_stage.yaml", "configs/model/unet.yaml"}


@pytest.mark.parametrize("path,text", BLOCKS, ids=[p for p, _ in BLOCKS])
def test_readme_example_is_the_file_and_builds(path, text):
    assert (REPO / path).read_text() == text
    build_model(REPO / path)
