"""The ``tribyol`` command: pretrain, export, demo, and the commands other modules register.

Sub-command groups live beside the code they drive (for example ``tribyol.eval.cli``); each
exposes ``add_commands(subparsers)`` and is listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import shlex
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import Field, dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tribyol.config import DEFAULT_METHOD, config_option
from tribyol.config.fields import add_flag, comma_list, flag_name, option
from tribyol.config.schema import type_hints
from tribyol.errors import DISK_ERRNOS, USER_ERRORS, RunStopped
from tribyol.resolve import load_config
from tribyol.runs import format_runs, list_runs, resume_config

# Modules that add their own sub-commands; a missing one is skipped.
COMMAND_MODULES = ("tribyol.eval.cli", "tribyol.report.cli", "tribyol.reproduce")
# The demo's wall time, as README.md states it too (a test holds them equal): `time tribyol
# demo` took 107 s on an idle 2-core machine with Fashion-MNIST installed.
DEMO_DURATION = "about 2 minutes on 2 CPU cores"
# What `tribyol --help` says first (the module docstring is for developers).
DESCRIPTION = (
    "Self-supervised image representation learning that stays accurate with small batches: "
    "TriBYOL (ICASSP 2022) and its baselines. Pre-train an encoder, evaluate it (linear probe, "
    "kNN, fine-tuning, transfer), export it, and run whole grids of experiments into "
    f"poster-shaped tables. New here? `tribyol demo` runs offline, {DEMO_DURATION}."
)


@dataclass
class MethodFlags:
    """The ``pretrain`` flags that set ``method.*``. The options themselves, with their defaults
    and checks, are the methods' ``Options`` (``tribyol.methods``, which imports torch): these
    fields describe the flags only, and repeat no default."""

    # The registry's names, written out: it imports torch (a test keeps them in step).
    method: str = option(DEFAULT_METHOD, "tribyol, byol, cross, simsiam, simclr, pirl-jigsaw, "
                                         "pirl-rotation, supervised or supervised-imagenet")
    num_views: int | None = option(None, "TriBYOL: number of views, >= 3",
                                   default_text="TriBYOL's, docs/methods.md")
    weights: str | None = option(None, "supervised-imagenet: ImageNet state-dict file",
                                 default_text="the torch hub cache")


# Flag attribute -> the dotted config key it sets; its meaning and default are that key's
# option field (``tribyol.config``), or ``MethodFlags``' for a method's.
PRETRAIN_FLAGS = {
    "method": "method.name", "dataset": "data.dataset", "data_root": "data.root",
    "download": "data.download", "batch_size": "train.batch_size", "epochs": "train.epochs",
    "max_steps": "train.max_steps", "backbone": "model.backbone", "precision": "train.precision",
    "seed": "train.seed", "runs_root": "runs_root", "name": "name",
    "num_views": "method.num_views", "weights": "method.weights", "devices": "train.devices",
    "strategy": "train.strategy", "accelerator": "train.accelerator", "limit": "data.limit",
}


def pretrain_option(attr: str) -> tuple[Field, Any]:
    """The option field behind pretrain's flag ``attr`` and its type."""
    key = PRETRAIN_FLAGS[attr]
    if key.startswith("method."):
        return {f.name: f for f in fields(MethodFlags)}[attr], type_hints(MethodFlags)[attr]
    found = config_option(key)
    assert found is not None, key
    return found


def add_pretrain_flags(p: argparse.ArgumentParser) -> None:
    """``PRETRAIN_FLAGS`` as flags; unset ones leave the config's value (``None`` default)."""
    for attr in PRETRAIN_FLAGS:
        f, hint = pretrain_option(attr)
        add_flag(p, f, hint, flag=flag_name(attr), dest=attr, unset=True)


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
    if any(a.startswith("--resume=") or a == "--resume" and not b.startswith("-")
           for a, b in zip(argv, [*argv[1:], "-"], strict=True)):
        return shlex.join(["tribyol", *argv])  # --resume RUN_DIR: already the command
    args = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(["tribyol", *args, "--resume"])


def cmd_pretrain(args: argparse.Namespace) -> int:
    # The config is checked before torch and Lightning are imported: its errors come at once.
    overrides = overrides_from_args(args, PRETRAIN_FLAGS)
    # --resume RUN_DIR: the run's own config.yaml, with only the flags given here on top.
    saved = resume_config(args.resume, args.config, overrides) if isinstance(args.resume, str) else None
    cfg = load_config(saved or args.config, overrides)
    from tribyol.engine import pretrain

    run_dir = pretrain(cfg, resume=saved.parent if saved else args.resume, overwrite=args.overwrite,
                       resume_command=resume_command(args.argv))
    if _global_rank() == 0:  # under DDP every process gets here; the path is said once
        print(f"run directory: {run_dir}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, overrides_from_args(args, PRETRAIN_FLAGS))
    from tribyol.engine.plan import format_plan, plan_run

    memory = args.memory if args.memory is not None else cfg.train.memory_gib
    plan = plan_run(cfg, memory, args.batches, args.steps)
    print(format_plan(plan, cfg))
    return 0


def _global_rank() -> int:
    """This process's rank in a DDP run (0 outside one), as Lightning set it."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


def cmd_export(args: argparse.Namespace) -> int:
    from tribyol.export import export_encoder

    out = export_encoder(args.run, args.out, overwrite=args.overwrite)
    print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tribyol.demo import run_demo

    run_demo(runs_root=args.runs_root, quick=args.quick)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    print(format_runs(list_runs(args.root)))
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from tribyol.data.check import run_check

    return run_check(args.root, args.jobs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tribyol", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"tribyol {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "pretrain", help="self-supervised pre-training",
        description="Pre-train an encoder. Flags override --config, and --set overrides both; "
                    "unset flags take the config's value (every key, with its default and "
                    "meaning, is an option field in `tribyol.config`).",
    )
    add_config_args(p)
    add_pretrain_flags(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                       help="continue the run in its directory (a changed network is refused); "
                            "with RUN_DIR, that run with its saved config.yaml, flags given on top")
    group.add_argument("--overwrite", action="store_true",
                       help="replace an existing run (only a tribyol run; deleted once the new one starts)")
    p.set_defaults(func=cmd_pretrain)

    _add_plan_command(sub)

    p = sub.add_parser("export", help="write a run's encoder as safetensors")
    p.add_argument("run", help="run directory (or a .ckpt file)")
    p.add_argument("--out", required=True, help="output .safetensors file (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (default: refuse)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help=f"an offline demo, {DEMO_DURATION}: TriBYOL vs BYOL vs random init")
    p.add_argument("--runs-root", default="runs/demo", help="where the demo writes its runs")
    p.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("runs", help="list runs: status, steps done/planned, method, dataset, last checkpoint")
    p.add_argument("root", nargs="?", default="runs", metavar="RUNS_ROOT", help="default: runs")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("data", help="dataset tools").add_subparsers(dest="tool", required=True)
    p = p.add_parser("check", help="decode every image of a folder dataset (exit 2 if one is bad)")
    p.add_argument("root", metavar="ROOT", help="ROOT/<class>/<images>, or ROOT/train/..., ROOT/test/...")
    p.add_argument("--jobs", type=int, default=None, help="decoding threads (default: cores, at most 8)")
    p.set_defaults(func=cmd_data_check)

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


def _add_plan_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="the batch finder: peak memory against the batch, and the largest that fits",
        description="Measure the peak memory of a few real training steps per candidate batch "
                    "(each in a fresh process) for the run the flags describe, and print the "
                    "table and the largest batch within --memory. `pretrain --batch-size auto` "
                    "does the same and trains at that batch (README.md, train.batch_size).")
    add_config_args(p)
    add_pretrain_flags(p)
    p.add_argument("--memory", type=float, default=None, metavar="GIB",
                   help="the budget in GiB (default: train.memory_gib, else 0.9 of what the "
                        "device has free)")
    p.add_argument("--batches", type=comma_list(int), default=None, metavar="B,B,...",
                   help="candidate batches (default: 2, 4, 8, ... up to the number of images)")
    p.add_argument("--steps", type=int, default=3, help="training steps per candidate (default 3)")
    p.set_defaults(func=cmd_plan)


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


class _Terminated(BaseException):
    """SIGTERM outside a run's own handling (before training starts): it unwinds the program as
    Ctrl+C does, so that what was being set up is undone (a replaced run put back, temporary
    files removed), where the default action would kill the process half-way."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises ``_Terminated`` meanwhile (where nobody else handles it already);
    a run's ``StopOnSignal`` takes over during training and hands it back after."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
        with _sigterm_unwinds():
            return args.func(args)
    except RunStopped as err:
        # Not a failure of the run's own: a checkpoint is saved, and the exit code says why.
        print(str(err), file=sys.stderr)
        return err.exit_code
    except USER_ERRORS as err:
        # Errors the user can fix get one line naming the problem and the remedy, no traceback.
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in DISK_ERRNOS:
            raise
        # A full or read-only disk (a run names its last good checkpoint itself, above).
        where = f"cannot write {err.filename}" if err.filename else "cannot write to the disk"
        print(f"error: {where}: {err.strerror}; free some space, or pick another folder",
              file=sys.stderr)
        return 2
    except (KeyboardInterrupt, _Terminated) as err:
        # Ctrl+C or SIGTERM outside training (a run stops itself with a checkpoint, above):
        # one line and 128 + the signal, as a shell reports it; nothing is left half-written.
        signum = signal.SIGINT if isinstance(err, KeyboardInterrupt) else signal.SIGTERM
        when = " before training started; no step was trained" if args.command == "pretrain" else ""
        print(f"interrupted by {signum.name}{when}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
