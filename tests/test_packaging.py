"""The installed package is the whole product: a wheel carries the configs, builds zoo models by name
and trains with the same command line as train.py, outside any checkout."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from convzoo import list_pretrained

REPO = Path(__file__).resolve().parent.parent


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result


def source_tree(destination: Path) -> Path:
    """The checkout's tracked files and new ones git does not ignore (building writes build/ into the source)."""
    listed = run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO).stdout.splitlines()
    for name in listed:
        if (REPO / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    return destination


@pytest.mark.slow
def test_wheel_carries_the_zoo_and_trains_outside_the_checkout(tmp_path):
    source = source_tree(tmp_path / "source")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", source)
    wheel = next((tmp_path / "dist").glob("convzoo-*.whl"))
    files = set(zipfile.ZipFile(wheel).namelist())
    assert {"convzoo/configs/train.yaml", "convzoo/configs/model/resnet_cifar.yaml", "convzoo/configs/recipe/wrn_cifar.yaml"} <= files
    shipped = {f"convzoo/pretrained/{e['file']}" for e in list_pretrained() if e.get("file")}
    assert shipped and {"convzoo/pretrained/manifest.json", *shipped} <= files

    # A fresh environment outside the checkout; torch and the other dependencies are borrowed from this
    # one through a path entry (a .pth line adds the folder, it does not run this environment's editable hook).
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel)

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONVZOO_CONFIG_DIR")}
    built = run(python, "-c", (
        "import convzoo; "
        "net = convzoo.create_model('resnet_cifar', depth=56, num_classes=100); "
        "print(convzoo.__file__, sum(p.numel() for p in net.parameters()))"
    ), cwd=work, env=env).stdout.split()
    assert built[0].startswith(str(site)) and built[1] == "858868"
    trained = run(python, "-c", "import convzoo; print(convzoo.create_model('resnet_cifar', pretrained='cifar10').training)",
                  cwd=work, env=env).stdout
    assert trained.strip() == "False"
    summary = run(python, "-m", "convzoo", "summary", "model=convmixer", cwd=work, env=env).stdout
    assert "594,186" in summary
    run(venv / "bin" / "convzoo-train", "data=synthetic", "model=resnet_cifar", "debug=fast_dev_run", "data.batch_size=16",
        "hydra.run.dir=run", cwd=work, env=env)
    assert (work / "run" / "metrics.json").is_file() and (work / "run" / "summary.txt").read_text().count("basic") == 9
