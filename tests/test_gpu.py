"""The CUDA path: AMP in bf16 and fp16, channels-last on cuDNN, torch.compile of a graph network,
data held and augmented on the GPU, checkpoints across devices, exact resume, export of a GPU-trained model.

Skipped without a CUDA GPU (CI has none). On a machine with one: ``python -m pytest tests/test_gpu.py -m gpu``
(``benchmarks/gpu_check.sh`` runs them on the device machine, with the benchmark).
"""

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict
from test_resume import RUN as RESUME_RUN
from test_resume import record, train_py

from convzoo import build_model, create_model
from convzoo.__main__ import main
from convzoo.training.module import load_model
from convzoo.config import compose
from convzoo.data import InMemoryLoader
from convzoo.deploy import deploy_info, load_checkpoint
from convzoo.deploy.export import EXPORT_FORMATS, check_parity, export_model
from convzoo.network.build import GraphNet
from convzoo.training import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,  # they train
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none): run on one with -m gpu"),
]

REPO = Path(__file__).resolve().parent.parent
# The trained_checkpoint fixture's run (conftest.py), on the GPU: a narrow airbench (whitening stem,
# batch norms, global max-pool), 6 steps of 64 synthetic images an epoch.
SMALL_RUN = ["data=synthetic", "model=airbench", "model.width_multiplier=0.125", "data.num_train=384",
             "data.val_size=128", "data.batch_size=64", "data_init_images=256", "test=false", "logger=csv",
             "callbacks=default"]
GPU = ["trainer=gpu"]


@pytest.fixture(autouse=True)
def restore_global_torch_flags():
    """A Trainer sets process-wide flags (cuDNN autotuning, deterministic algorithms); each test starts from these."""
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
             torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2])
    torch.backends.cudnn.allow_tf32 = saved[3]
    torch.set_float32_matmul_precision(saved[4])


def exact_fp32() -> None:
    """No TF32 in cuDNN convolutions or matmuls: fp32 results on the GPU then agree with the CPU's to ~1e-6."""
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def close(actual: torch.Tensor, expected: torch.Tensor, relative: float) -> bool:
    """``actual`` within ``relative`` x the largest magnitude of ``expected`` (the parity check's measure)."""
    actual, expected = actual.float().cpu(), expected.float().cpu()
    return (actual - expected).abs().max().item() <= relative * expected.abs().max().item()


class Probe(L.Callback):
    """What a GPU run looks like from inside, read at its first training step: where the data module keeps
    the data, what the training step receives, where the weights live and in which dtype the network
    computes (a forward hook on its first convolution). ``Probe.last`` is the last instance made."""

    last: "Probe | None" = None

    def __init__(self):
        self.seen: dict = {}
        Probe.last = self

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        conv = next(m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.requires_grad)

        def record_dtype(_module, _inputs, output: torch.Tensor) -> None:  # None: the output is left as it is
            self.seen.setdefault("activation_dtype", output.dtype)

        self._hook = conv.register_forward_hook(record_dtype)

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch, batch_idx: int) -> None:
        if "batch" in self.seen:
            return
        images, labels = batch
        loader = trainer.train_dataloader
        self.seen.update(
            loader=type(loader), held=(loader.images.device.type, loader.images.dtype),
            batch=(images.device.type, images.dtype, images.is_contiguous(memory_format=torch.channels_last)),
            labels=labels.device.type, normalised=abs(images.float().mean().item()) < 1.0,
            weights={(p.device.type, p.dtype) for p in module.parameters()},
            scaler=getattr(trainer.precision_plugin, "scaler", None))

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._hook.remove()


def fit(tmp_path: Path, *overrides: str) -> dict:
    cfg = compose([*overrides, "+callbacks.probe={_target_: test_gpu.Probe}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    return train(cfg)


def epoch_losses(run_dir: Path) -> list[float]:
    import csv

    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [float(row["train/loss_epoch"]) for row in csv.DictReader(handle) if row.get("train/loss_epoch")]


@pytest.fixture(scope="module")
def gpu_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SMALL_RUN trained on the GPU for one epoch: its last.ckpt."""
    run_dir = tmp_path_factory.mktemp("gpu-trained")
    cfg = compose([*SMALL_RUN, *GPU, "trainer.max_epochs=1"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("precision, compute_dtype", [("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)])
def test_amp_training_overfits_a_batch_on_the_gpu(precision, compute_dtype, tmp_path):
    # debug=overfit_batch: one fixed batch of 64, 60 epochs; the CPU test of the same recipe reaches < 0.05 in fp32
    metrics = fit(tmp_path, "data=synthetic", "model=convmixer_tiny", "model.dim=64", "model.depth=2", "debug=overfit_batch",
                  *GPU, f"trainer.precision={precision}")
    seen = Probe.last.seen
    assert seen["activation_dtype"] == compute_dtype         # autocast ran the convolutions in half precision
    assert seen["weights"] == {("cuda", torch.float32)}     # on fp32 master weights, on the GPU
    assert (seen["scaler"] is not None) == (precision == "16-mixed")  # fp16 needs loss scaling, bf16 does not
    losses = epoch_losses(tmp_path)
    assert losses[0] > 2.0 and losses[-1] < 0.1, losses
    assert metrics["epochs"] == 60


def test_data_module_keeps_and_augments_the_data_on_the_gpu(tmp_path):
    fit(tmp_path, *SMALL_RUN, *GPU, "trainer.max_epochs=1", "data.augment.cutout=8")
    seen = Probe.last.seen
    assert seen["loader"] is InMemoryLoader and seen["held"] == ("cuda", torch.uint8)  # the whole set, once, as uint8
    assert seen["batch"] == ("cuda", torch.float32, True) and seen["labels"] == "cuda"  # augmented + normalised there
    assert seen["normalised"]


# a skip that zero-pads channels, concatenations, channels-last LayerNorm, depthwise convolutions
@pytest.mark.parametrize("family", ["resnet_cifar", "densenet", "convnext_cifar", "mobilenetv2"])
def test_channels_last_stays_channels_last_through_cudnn(family):
    exact_fp32()
    net = create_model(family).cuda().eval()
    layouts = []  # (conv, its input channels-last?, its output channels-last?)

    def record_layout(module, inputs, output: torch.Tensor) -> None:
        channels_last = [t.is_contiguous(memory_format=torch.channels_last) for t in (inputs[0], output)]
        layouts.append((module.name, *channels_last))

    for name, conv in ((n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)):
        conv.name = name
        conv.register_forward_hook(record_layout)
    x = torch.randn(32, 3, 32, 32, device="cuda")
    with torch.no_grad():
        nchw = net(x)
        layouts.clear()
        nhwc = net.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    # no block in between turns the activations back to NCHW (each time a transpose kernel on the GPU)
    converted = [name for name, into, out in layouts if not (into and out)]
    assert layouts and not converted, f"{len(converted)} of {len(layouts)} convolutions see NCHW: {converted[:5]}"
    assert close(nhwc, nchw, 1e-4)


def test_a_graph_network_compiles_whole_and_trains_on_cuda():
    exact_fp32()
    net = build_model(REPO / "examples" / "resnet_stage.yaml").cuda().to(memory_format=torch.channels_last)
    assert isinstance(net, GraphNet)  # the planned forward, not an nn.Sequential
    compiled = torch.compile(copy.deepcopy(net), fullgraph=True)  # fullgraph: a graph break is an error
    x = torch.randn(64, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (64,), device="cuda")

    def step(model: torch.nn.Module, bf16: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        torch.nn.functional.cross_entropy(logits.float(), labels).backward()
        return logits, {name.removeprefix("_orig_mod."): p.grad for name, p in model.named_parameters()}

    eager_logits, eager_grads = step(net, bf16=False)
    compiled_logits, compiled_grads = step(compiled, bf16=False)  # fp32: the same function, to rounding
    assert close(compiled_logits, eager_logits, 1e-4)
    assert compiled_grads.keys() == eager_grads.keys()
    for name, grad in eager_grads.items():
        assert close(compiled_grads[name], grad, 1e-3), name
    bf16_logits, bf16_grads = step(compiled, bf16=True)  # and as training runs it: bf16 autocast, channels-last
    assert close(bf16_logits, eager_logits, 5e-2)
    assert all(torch.isfinite(grad).all() for grad in bf16_grads.values())


def test_a_gpu_checkpoint_loads_on_the_cpu_and_a_cpu_checkpoint_on_the_gpu(gpu_checkpoint, trained_checkpoint):
    exact_fp32()
    x = torch.randn(16, 3, 32, 32)
    for checkpoint in (gpu_checkpoint, trained_checkpoint):
        on_cpu, on_gpu = load_model(checkpoint), load_model(checkpoint, map_location="cuda")
        assert {p.device.type for p in on_cpu.parameters()} == {"cpu"}
        assert {p.device.type for p in on_gpu.parameters()} == {"cuda"}
        with torch.no_grad():
            assert close(on_gpu(x.cuda()), on_cpu(x), 1e-4), checkpoint
        net, _ = load_checkpoint(checkpoint, device="cuda")  # the loader without Lightning, too
        with torch.no_grad():
            assert close(net(x.cuda()), on_cpu(x), 1e-4), checkpoint


@pytest.mark.parametrize("trainer", ["gpu", "cpu"])
def test_training_continues_on_the_other_device(trainer, gpu_checkpoint, trained_checkpoint, tmp_path):
    # the checkpoint the other device wrote: CPU -> GPU and GPU -> CPU, optimizer state and all
    checkpoint = trained_checkpoint if trainer == "gpu" else gpu_checkpoint
    metrics = fit(tmp_path, *SMALL_RUN, f"trainer={trainer}", "trainer.max_epochs=2", f"ckpt_path={checkpoint}")
    assert metrics["epochs"] == 2
    assert Probe.last.seen["weights"] == {("cuda" if trainer == "gpu" else "cpu", torch.float32)}


def test_a_killed_gpu_run_resumes_bit_identically_with_deterministic_kernels(tmp_path):
    """README's recipe for bit-identical GPU runs (trainer.deterministic=true trainer.benchmark=false),
    tested as tests/test_resume.py tests the CPU: a run SIGKILLed mid-epoch and resumed ends with the
    same metrics and log as one that never stopped (CUDA generators restored: cutout draws on the GPU)."""
    deterministic = [*RESUME_RUN, *GPU, "trainer.deterministic=true", "trainer.benchmark=false"]
    uninterrupted = tmp_path / "uninterrupted"
    fit(uninterrupted, *deterministic)
    run_dir = tmp_path / "run"
    killed = train_py(tmp_path, *deterministic, f"hydra.run.dir={run_dir}", "+callbacks.kill={_target_:faults.KillSwitch,step:7}")
    assert killed.returncode == -9, killed.stderr[-3000:]
    train(compose([f"resume={run_dir}", "~callbacks.kill"]))
    assert record(run_dir) == record(uninterrupted)


def test_default_gpu_runs_agree_to_a_few_decimals(tmp_path):
    """README: with cuDNN autotuning and non-deterministic kernels (trainer=gpu's defaults) the same
    seed gives metrics that agree to a few decimals, not bit for bit."""
    first = fit(tmp_path / "a", *RESUME_RUN, *GPU)
    second = fit(tmp_path / "b", *RESUME_RUN, *GPU)
    for key in ("val/loss", "test/loss"):
        assert abs(first[key] - second[key]) < 1e-3, (key, first[key], second[key])


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
def test_a_gpu_trained_network_exports_with_parity(fmt, gpu_checkpoint, tmp_path):
    on_gpu = load_model(gpu_checkpoint, map_location="cuda")
    path = export_model(on_gpu, tmp_path / f"net{EXPORT_FORMATS[fmt]}", fmt, deploy_info(on_gpu))
    assert check_parity(on_gpu, path, fmt).ok  # the artifact (CPU, fp32) computes what the trained network does
    assert next(on_gpu.parameters()).is_cuda  # exporting copied it; the network stays where it was
    out = tmp_path / f"cli{EXPORT_FORMATS[fmt]}"
    assert main(["export", str(gpu_checkpoint), "--format", fmt, "--out", str(out)]) == 0


def test_depthwise_convs_leave_cuda_to_cudnn():
    """The fast depthwise path is a CPU backward: on CUDA every depthwise conv is plain nn.Conv2d (cuDNN)."""
    from convzoo import DepthwiseConv2d

    net = create_model("convmixer_tiny").cuda().to(memory_format=torch.channels_last)
    depthwise = [m for m in net.modules() if isinstance(m, DepthwiseConv2d) and m.groups == m.in_channels > 1]
    assert depthwise, "convmixer_tiny has depthwise convs"
    taken = []
    hooks = [m.register_forward_pre_hook(lambda m, args: taken.append(m.takes_fast_path(args[0]))) for m in depthwise]
    x = torch.randn(8, 3, 32, 32, device="cuda").to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = net(x).float().logsumexp(1).mean()
    loss.backward()
    for hook in hooks:
        hook.remove()
    assert taken == [False] * len(depthwise)
    assert all(m.weight.grad is not None and m.weight.grad.is_cuda for m in depthwise)
