"""The eval flags are generated from the option dataclasses: one flag per field, with the field's
default, so a default is written once and cannot drift between the CLI and the library."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import MISSING, fields

import pytest

from tribyol.cli import build_parser
from tribyol.config.fields import flag_help
from tribyol.errors import ConfigError
from tribyol.eval.cli import PROTOCOLS
from tribyol.eval.options import (
    EvalOptions,
    FinetuneOptions,
    KnnOptions,
    LinearOptions,
    TransferOptions,
)


def eval_parsers() -> dict[str, argparse.ArgumentParser]:
    def children(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return sub.choices

    return dict(children(children(build_parser())["eval"]))


def flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "parser")]


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_every_field_is_one_flag_with_the_fields_default(protocol: str) -> None:
    parser = eval_parsers()[protocol]
    _help, _func, groups = PROTOCOLS[protocol]
    actions = flags(parser)
    seen: set[str] = set()
    for group in groups:
        for f in fields(group):
            matching = [a for a in actions if a.dest == f.name]
            assert len(matching) == 1, f"{group.__name__}.{f.name}: {len(matching)} flags"
            (action,) = matching
            assert action.option_strings == ["--" + f.name.replace("_", "-")]
            if f.default is MISSING:
                assert action.required, f"{f.name}: no default, so the flag is required"
            else:
                assert action.default == f.default, f"{group.__name__}.{f.name}"
                assert not action.required
            # the field's help, default included, is the flag's (the first group's, where two
            # share a field: finetune's seed and eval_batch_size)
            if f.name not in seen:
                assert action.help.replace("%%", "%") == flag_help(f)
            seen.add(f.name)
    # and no flag comes from anywhere else
    names = {f.name for group in groups for f in fields(group)}
    assert {a.dest for a in actions} == names


def test_the_parsed_defaults_build_each_group_unchanged() -> None:
    parsers = eval_parsers()
    args = parsers["linear"].parse_args(["run"])
    assert LinearOptions.from_args(args) == LinearOptions()
    assert EvalOptions.from_args(args) == EvalOptions()
    assert KnnOptions.from_args(parsers["knn"].parse_args(["run"])) == KnnOptions()
    args = parsers["finetune"].parse_args(["run", "--label-fraction", "0.1"])
    assert FinetuneOptions.from_args(args) == FinetuneOptions()
    assert TransferOptions.from_args(parsers["transfer"].parse_args(["a", "b"])) == TransferOptions()


def test_comma_separated_flags_parse_to_tuples() -> None:
    parsers = eval_parsers()
    args = parsers["transfer"].parse_args(["run", "--weight-decays", "1e-4, 1e-3,",
                                           "--targets", "mnist, cifar10"])
    assert args.weight_decays == (1e-4, 1e-3) and args.targets == ("mnist", "cifar10")
    assert parsers["linear"].parse_args(["run"]).weight_decays == LinearOptions.weight_decays


def test_the_dataclass_refuses_a_bad_value_outside_the_cli_too() -> None:
    with pytest.raises(ConfigError, match=r"--batch-size must be >= 2, got 1 \(.*default 64\)"):
        FinetuneOptions(batch_size=1)
    with pytest.raises(ConfigError, match="--augment must be one of crop-flip, byol, none"):
        FinetuneOptions(augment="cutout")
    with pytest.raises(ConfigError, match="--temperature must be > 0"):
        KnnOptions(temperature=float("inf"))
    with pytest.raises(ConfigError, match="--device must be cpu, cuda, cuda:N or mps"):
        EvalOptions(device="cuda:x")
    assert EvalOptions(device="cuda:1").device == "cuda:1"


def test_help_shows_every_default(capsys) -> None:
    with pytest.raises(SystemExit):
        eval_parsers()["knn"].parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("--k K the neighbours that vote (default 200)",
                 "votes weigh exp(similarity / T) (default 0.07)",
                 "(default results/results.jsonl)", "(default 256)"):
        assert text in out


@pytest.mark.parametrize("module", ["tribyol.eval.options", "tribyol.eval.cli"])
def test_the_flags_need_no_torch(module: str) -> None:
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0, module
