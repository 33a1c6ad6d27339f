import subprocess
import sys

import pytest

from convzoo.__main__ import main


def test_list_shows_blocks_with_arguments(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "convmixer(kernel_size=9, act='gelu'" in out and "(alias cna)" in out
    assert "kaiming_normal" in out and "groupnorm" in out


def test_summary_composes_the_real_config(capsys):
    assert main(["summary", "model=convmixer", "model.depth=2"]) == 0
    out = capsys.readouterr().out
    assert "layers.mixer.1" in out and "layers.mixer.2" not in out and "total" in out


@pytest.mark.slow
def test_summary_reports_bad_overrides_clearly():
    result = subprocess.run([sys.executable, "-m", "convzoo", "summary", "model=convmixr"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: model=convmixr: there is no config 'convmixr' in the 'model' group. Did you mean "
                           "'convmixer' or 'convmixer_tiny'") and "Available: airbench, conv_norm_act, convmixer," in line


def test_summary_reports_a_bad_value_in_one_line(capsys):
    assert main(["summary", "model.dim=abc"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and "out_channels='abc'" in error
