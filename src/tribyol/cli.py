"""The ``tribyol`` command: pretrain, export, demo, and the commands other modules register.

Sub-command groups live beside the code they drive (for example ``tribyol.eval.cli``); each
exposes ``add_commands(subparsers)`` and is listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import shlex
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from tribyol.errors import USER_ERRORS, RunStopped
from tribyol.resolve import load_config

# Modules that add their own sub-commands; a missing one is skipped.
COMMAND_MODULES = ("tribyol.eval.cli", "tribyol.report.cli", "tribyol.reproduce")

# Short flags -> dotted config keys.
PRETRAIN_FLAGS = {
    "method": "method.name",
    "dataset": "data.dataset",
    "data_root": "data.root",
    "download": "data.download",
    "batch_size": "train.batch_size",
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "backbone": "model.backbone",
    "precision": "train.precision",
    "seed": "train.seed",
    "run_dir": "run_dir",
    "name": "name",
    "views": "method.num_views",
    "weights": "method.weights",
    "devices": "train.devices",
    "strategy": "train.strategy",
    "accelerator": "train.accelerator",
    "limit": "data.limit",
}


def overrides_from_args(args: argparse.Namespace, flags: dict[str, str]) -> list:
    """Explicit flags first, then ``--set key=value`` overrides (which win)."""
    out: list = []
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value is not None and value is not False:
            out.append((key, value))
    out.extend(args.set or [])
    return out


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file; flags and --set override it")
    p.add_argument(
        "--set", "-o", action="append", metavar="KEY=VALUE",
        help="dotted override, e.g. --set optim.lr=0.1 --set method.target_policy=shared",
    )


def resume_command(argv: Sequence[str]) -> str:
    """The command that continues this run: the same arguments, ``--resume`` for ``--overwrite``."""
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(["tribyol", *args, "--resume"])


def cmd_pretrain(args: argparse.Namespace) -> int:
    # The config is checked before torch and Lightning are imported: its errors come at once.
    cfg = load_config(args.config, overrides_from_args(args, PRETRAIN_FLAGS))
    from tribyol.engine import pretrain

    run_dir = pretrain(cfg, resume=args.resume, overwrite=args.overwrite,
                       resume_command=resume_command(args.argv))
    print(f"run directory: {run_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tribyol.export import export_encoder

    out = export_encoder(args.run, args.out, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tribyol.demo import run_demo

    run_demo(run_dir=args.run_dir, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tribyol", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"tribyol {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "pretrain", help="self-supervised pre-training",
        description="Pre-train an encoder. Flags override --config, and --set overrides both; "
                    "unset flags take the config's value (defaults in docs and `tribyol.config`).",
    )
    add_config_args(p)
    p.add_argument("--method", help="tribyol (default), byol, cross, simsiam, simclr, pirl-jigsaw, "
                   "pirl-rotation, supervised, supervised-imagenet")
    p.add_argument("--dataset", help="fashionmnist (default), mnist, kmnist, usps, svhn, cifar10, "
                   "cifar100, stl10, digits, or folder (your ImageFolder)")
    p.add_argument("--data-root", help="folder with the dataset's files (default: data)")
    p.add_argument("--download", action="store_true", help="fetch the dataset (needs internet; default: off)")
    p.add_argument("--batch-size", type=int, help="images per device per step (default 32)")
    p.add_argument("--epochs", type=int, help="passes over the data (default 80, the poster's)")
    p.add_argument("--max-steps", type=int,
                   help="stop after this many optimizer steps (default -1: off); names the run sN")
    p.add_argument("--backbone", help="convnet (default), resnet18, resnet50")
    p.add_argument("--precision", help="auto (default: bf16 where native), bf16-mixed, 16-mixed, 32")
    p.add_argument("--seed", type=int, help="in [0, 2**32) (default 0)")
    p.add_argument("--views", type=int, help="TriBYOL: number of views, >= 3 (default 3)")
    p.add_argument("--weights", help="supervised-imagenet: ImageNet state-dict file "
                   "(default: the torch hub cache)")
    p.add_argument("--devices", help="device count, list of ids, or auto (default auto)")
    p.add_argument("--strategy", help="auto (default), ddp, ...")
    p.add_argument("--accelerator", help="auto (default), cpu, gpu")
    p.add_argument("--limit", type=int,
                   help="use a seeded, stratified subset of N training images (default: all)")
    p.add_argument("--run-dir", help="parent folder of run directories (default runs/)")
    p.add_argument("--name", help="run directory name, one plain folder name "
                   "(default: method_backbone_batch_budget_dataset)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue the run in its directory (a changed network is refused)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace an existing run (only a tribyol run; deleted once the new one starts)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("export", help="write a run's encoder as safetensors")
    p.add_argument("run", help="run directory (or a .ckpt file)")
    p.add_argument("--out", required=True, help="output .safetensors file (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="a 3-minute offline demo: TriBYOL vs BYOL vs random init")
    p.add_argument("--run-dir", default="runs/demo", help="where the demo writes its runs")
    p.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    p.set_defaults(func=cmd_demo)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.add_commands(sub)
    _remember_parsers(parser)
    return parser


def _remember_parsers(parser: argparse.ArgumentParser) -> None:
    """Each (sub-)command's parser as its ``parser`` default, for usage on errors."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                child.set_defaults(parser=child)
                _remember_parsers(child)


def package_version() -> str:
    try:
        return version("tribyol")
    except PackageNotFoundError:
        return "unknown (not installed)"


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse, showing the sub-command's usage (not the top level's) for a flag it does not know."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        (getattr(args, "parser", None) or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # Lightning prints its lines through its own console handler; passed on to ours as well,
    # each would print twice.
    logging.getLogger("lightning").propagate = False
    # Lightning's advertisement and its own internal deprecation notice tell the user nothing.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    try:
        return args.func(args)
    except RunStopped as err:
        # Not a failure of the run's own: a checkpoint is saved, and the exit code says why.
        print(str(err), file=sys.stderr)
        return err.exit_code
    except USER_ERRORS as err:
        # Errors the user can fix get one line naming the problem and the remedy, no traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
