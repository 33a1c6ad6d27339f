"""``python -m convzoo export``, ``predict`` and ``evaluate`` (docs: Export, deploy and predict; Pretrained weights).

Each command is a subparser whose ``run(args) -> exit status`` does the work: 0 done, 1 the artifact
does not match the network. What it raises, ``python -m convzoo`` reports in one line with the exit
code [`convzoo.errors`][convzoo.errors] gives it (2 a usage problem or a missing extra, 1 a failed export).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_commands", "run_evaluate", "run_export", "run_predict"]

_FORMATS = ("onnx", "export", "torchscript")  # convzoo.deploy.export.EXPORT_FORMATS, without importing torch for --help


_ALLOW_IMPORTS_HELP = ("import the modules a checkpoint's spec names in imports: (their blocks); importing runs their "
                       "code, so only for a checkpoint you trust. Without it such a checkpoint is refused.")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register ``export`` and ``predict`` on ``python -m convzoo``'s subcommands."""
    export = commands.add_parser(
        "export", help="write a network as ONNX, torch.export (.pt2) or TorchScript and check it against the network",
        description="Export a trained checkpoint or a configured model, then run the network and the artifact on "
                    "the same random batch and compare (exit 1 above the fp32 tolerance).",
    )
    export.add_argument(
        "source", nargs="+",
        help="a checkpoint (run/checkpoints/best.ckpt), a spec file with key=value overrides (configs/model/unet.yaml "
             "width=32), or Hydra overrides of the training config (model=convmixer model.dim=128)",
    )
    export.add_argument("--format", choices=_FORMATS, default="onnx", help="default: onnx")
    export.add_argument("--out", type=Path, help="the file to write; default: beside the checkpoint, or "
                                                 "<model name>.onnx|.pt2|.pt in the current folder. An existing "
                                                 "file there is replaced, except a checkpoint (.ckpt) or a run's "
                                                 "record (metrics.json, ...), which is refused")
    export.add_argument("--allow-imports", action="store_true", help=_ALLOW_IMPORTS_HELP)
    export.set_defaults(run=run_export)

    predict = commands.add_parser(
        "predict", help="top-k classes of image files with a trained checkpoint or exported model",
        description="Classify images (any size and mode: converted, resized to the model's input size and "
                    "normalised with the statistics the checkpoint or artifact carries). Prints one line per image; "
                    "writes no files.",
    )
    predict.add_argument("model", type=Path, help="a checkpoint (.ckpt) or an exported model (.onnx, .pt2, .pt)")
    predict.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    predict.add_argument("--topk", type=int, default=5, help="classes shown per image (default 5)")
    predict.add_argument("--batch-size", type=int, default=256, help="images per forward pass (default 256)")
    predict.add_argument("--allow-imports", action="store_true", help=_ALLOW_IMPORTS_HELP)
    predict.set_defaults(run=run_predict)

    evaluate = commands.add_parser(
        "evaluate", help="test-set accuracy of a zoo model's weights, a checkpoint or a run: top-1, per class, "
                         "confusion matrix",
        description="Classify a data set's official test images and print top-1 and per-class accuracy; draw the "
                    "confusion matrix to a PNG.",
    )
    evaluate.add_argument("source", help="a zoo model with shipped weights (resnet_cifar, or resnet_cifar:depth=20 "
                                         "with overrides), a checkpoint (.ckpt) or a run directory (its last.ckpt)")
    evaluate.add_argument("--pretrained", default="cifar10", help="the weight set's tag, for a zoo model (default cifar10)")
    evaluate.add_argument("--data", choices=["cifar10", "cifar100", "cifar100-coarse"], default="cifar10")
    evaluate.add_argument("--root", help="the folder holding the data set (default: $CONVZOO_DATA, else ./data)")
    evaluate.add_argument("--tta", choices=["none", "flip", "flip_translate"], default="none",
                          help="test-time views averaged (default none: single view)")
    evaluate.add_argument("--limit", type=int, help="only the first N test images")
    evaluate.add_argument("--out", type=Path, help="confusion-matrix PNG (default: <name>-<data>-confusion.png here)")
    evaluate.add_argument("--allow-imports", action="store_true", help=_ALLOW_IMPORTS_HELP)
    evaluate.set_defaults(run=run_evaluate)


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def run_export(args: argparse.Namespace) -> int:
    """``python -m convzoo export``: a checkpoint, or a spec or ``model=...`` config, to an artifact.

    The artifact is checked against the network on a batch it never saw; the exit code is 1 (and the
    artifact must not be shipped) when its outputs differ beyond the fp32 tolerance.

    Args:
        args: the parsed command line (``source``, ``format``, ``out``, ``allow_imports``).

    Returns:
        The exit code: 0, or 1 when the parity check failed.
    """
    from hydra.utils import instantiate

    from convzoo.config import model_config
    from convzoo.deploy.checkpoint import deploy_info, load_checkpoint
    from convzoo.deploy.export import EXPORT_FORMATS, check_parity, export_model
    from convzoo.network.build import build_model
    from convzoo.errors import ConfigError
    from convzoo.runs.directory import refuse_to_replace_a_record

    source, suffix = args.source, EXPORT_FORMATS[args.format]
    first = Path(source[0])
    if first.suffix == ".ckpt" or (first.is_file() and first.suffix not in (".yaml", ".yml")):
        if len(source) > 1:
            raise ConfigError(f"a checkpoint is exported as trained; drop {' '.join(source[1:])!r} (overrides are for "
                              f"a spec file or model=...).")
        net, info = load_checkpoint(first, allow_imports=args.allow_imports)
        out = args.out or first.with_suffix(suffix)
    else:
        spec, cfg = model_config(source)
        net = build_model(spec).eval()
        recorded = {}
        if cfg is not None:  # what the configured data module states, when it fits the network
            data = instantiate(cfg.data)
            recorded = {"mean": data.mean, "std": data.std}
            if len(data.classes) == (net.num_classes or 0):
                recorded["classes"] = data.classes
        info = deploy_info(net, **recorded)
        out = args.out or Path(f"{info.name}{suffix}")
    out = refuse_to_replace_a_record(out, "--out")
    if args.format == "torchscript":
        _note("torch deprecates TorchScript in favour of torch.export; prefer --format export unless your runtime "
              "only loads TorchScript.")
    path = export_model(net, out, args.format, info)  # its errors are reported by their exit codes (convzoo.errors)
    parity = check_parity(net, path, args.format)
    print(f"exported {info.name} ({' '.join(source)}) to {path} ({args.format}, {path.stat().st_size / 1e6:.2f} MB)")
    print(f"  {info.describe()}")
    print(f"  {parity}")
    if not parity.ok:
        print(f"error: the {args.format} artifact does not reproduce the network within the fp32 tolerance "
              f"(see convzoo.deploy.export); do not ship {path}.", file=sys.stderr)
        return 1
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """``python -m convzoo predict``: print the top classes of each image file.

    Args:
        args: the parsed command line (``model``, ``images``, ``topk``, ``batch_size``, ``allow_imports``).

    Returns:
        The exit code, 0.
    """
    from convzoo.deploy.predict import load_predictor, predict_files

    predictor = load_predictor(args.model, allow_imports=args.allow_imports)
    if predictor.info.assumed:
        _note(f"the run behind {args.model} did not record {', '.join(predictor.info.assumed)}: "
              f"CIFAR-10's statistics and class names are used (class_<i> for another number of classes).")
    for path, top in predict_files(predictor, args.images, topk=args.topk, batch_size=args.batch_size):
        print(f"{path}  " + "  ".join(f"{name} {probability:.3f}" for name, probability in top))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``python -m convzoo evaluate``: a checkpoint or pretrained weights on a CIFAR test set.

    Prints the accuracy table and writes the confusion matrix as a PNG.

    Args:
        args: the parsed command line (``source``, ``pretrained``, ``data``, ``root``, ``limit``, ``tta``,
            ``out``, ``allow_imports``).

    Returns:
        The exit code, 0.
    """
    import os

    from convzoo.data.cifar10 import CIFAR10, CIFAR100, load_cifar
    from convzoo.deploy.evaluate import evaluate, load_for_evaluation, plot_confusion
    from convzoo.errors import ConfigError
    from convzoo.runs.directory import refuse_to_replace_a_record

    net, info = load_for_evaluation(args.source, args.pretrained, allow_imports=args.allow_imports)
    fmt = {"cifar10": CIFAR10, "cifar100": CIFAR100, "cifar100-coarse": CIFAR100.with_labels("coarse")}[args.data]
    data = load_cifar(args.root or os.environ.get("CONVZOO_DATA") or "data", fmt)
    if len(data.classes) != len(info.classes):
        raise ConfigError(f"{args.source} has {len(info.classes)} outputs and {args.data} {len(data.classes)} classes; "
                          f"evaluate it on the data set it was trained for.")
    images, labels = data.test_images[:args.limit], data.test_labels[:args.limit]
    result = evaluate(net, images, labels, info.mean, info.std, data.classes, tta=args.tta)
    out = refuse_to_replace_a_record(args.out or Path(f"{info.name}-{args.data}-confusion.png"), "--out")
    plot_confusion(result, data.classes, out, f"{args.source} on {args.data} test ({len(labels):,} images)")
    print(f"{args.source} on the {args.data} test set")
    print(result.table())
    print(f"confusion matrix: {out}")
    return 0
