"""convzoo.ops.kernels without a working compiler: one warning naming what to install, training on torch's
ops with the same results, the failed build remembered (not paid again by the next process), and torch's
logger left as it was."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, logging, sys, warnings
import torch
from convzoo import build_model, kernels
from convzoo.ops.depthwise import fast_depthwise, fast_depthwise_available
from convzoo.ops.norm_act import fused_norm_act, fused_norm_act_available

if sys.argv[1] == "bad-flag":
    kernels.COMPILE_FLAGS = ("-fno-such-flag-anywhere",)
if sys.argv[1] == "no-retry":
    def build(*args, **kwargs):
        raise AssertionError("the failed build was tried again")
    kernels.build = build
logger = logging.getLogger("torch.utils.cpp_extension")
logger.setLevel(logging.INFO)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    available = [fast_depthwise_available(), fused_norm_act_available()]

def step(enabled):
    torch.manual_seed(0)
    net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
        {"block": "patch_embed", "out_channels": 16, "patch_size": 2},
        {"block": "convmixer", "kernel_size": 5, "repeat": 2}, {"block": "classifier"}]})
    net = net.to(memory_format=torch.channels_last).train()
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with fast_depthwise(enabled), fused_norm_act(enabled):
        loss = torch.nn.functional.cross_entropy(net(x), torch.arange(8))
        loss.backward()
    return [loss.item()] + [p.grad.abs().sum().item() for p in net.parameters()]

print(json.dumps({"available": available, "warnings": [str(w.message) for w in caught if w.category is RuntimeWarning],
                  "logger_level": logger.level, "switched_on": step(True), "switched_off": step(False)}))
"""


def probe(mode: str, cache: Path, env_changes: dict) -> dict:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(cache), **env_changes}
    result = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_without_a_compiler_training_falls_back_once_and_the_failure_is_remembered(tmp_path):
    no_compiler = {"CXX": str(tmp_path / "no-such-compiler")}
    first = probe("first", tmp_path / "cache", no_compiler)
    assert first["available"] == [False, False]
    assert len(first["warnings"]) == 2 and all("Install a C++ compiler" in w for w in first["warnings"])
    assert first["switched_on"] == first["switched_off"]       # torch's ops, the same numbers
    assert first["logger_level"] == 20                         # INFO, as the process set it
    markers = sorted(p.name for p in (tmp_path / "cache" / "convzoo-failed-builds").iterdir())
    assert [m.split("_")[1] for m in markers] == ["depthwise", "norm"]

    again = probe("no-retry", tmp_path / "cache", no_compiler)   # kernels.build would raise if called
    assert again["available"] == [False, False]
    assert all("failed to build earlier" in w and "delete" in w for w in again["warnings"])


@pytest.mark.slow
def test_a_failing_flag_is_remembered_per_kernel_version(tmp_path):
    first = probe("bad-flag", tmp_path / "cache", {})
    assert first["available"] == [False, False] and first["switched_on"] == first["switched_off"]
    bad_flag_markers = set((tmp_path / "cache" / "convzoo-failed-builds").iterdir())
    assert len(bad_flag_markers) == 2
    # the same kernels with the shipped flags are another version: the markers above do not block them
    from convzoo.ops import kernels

    name = f"convzoo_norm_act_{kernels._cpu_tag()}"
    os.environ["TORCH_EXTENSIONS_DIR"] = str(tmp_path / "cache")
    try:
        assert kernels._failure_marker(name, kernels.SOURCES / "norm_act.cpp") not in bad_flag_markers
    finally:
        del os.environ["TORCH_EXTENSIONS_DIR"]
