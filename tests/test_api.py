"""Every example of docs/api.md runs, in order, as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import tribyol

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_api_examples_run(tmp_path: Path, monkeypatch, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 (our own docs)
    assert (tmp_path / "runs" / "api_demo" / "run.json").exists()
    assert "runs/api_demo 8 finished" in capsys.readouterr().out


def test_import_tribyol_stays_light() -> None:
    """The API names load on first use: importing the package pulls in neither torch nor Lightning."""
    import subprocess

    code = "import sys, tribyol; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_bad_config_is_a_config_error_before_anything_runs(tmp_path: Path) -> None:
    from tribyol.errors import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'batch_size'"):
        tribyol.pretrain(None, {"train.batchsize": 8, "runs_root": str(tmp_path)})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("options", "message"), [
    ({"k": 0}, r"^k must be .*, got 0"),
    ({"temperature": 0}, r"^temperature must be .*, got 0"),
    ({"device": "gpu"}, r"^device must be .*, got 'gpu'"),
    ({"limit_train": 0}, r"^limit_train must be .*, got 0"),
    ({"test_from_train": 1.5}, r"^test_from_train must be .*, got 1.5"),
    ({"k": 5.5}, r"^k must be a whole number, got 5.5"),
    ({"seed": -1}, r"^seed must be in \[0, 2\*\*32\), got -1"),
    ({"dataset": "cifar11"}, r"unknown dataset 'cifar11'"),
])
def test_evaluate_checks_its_options_before_loading_anything(tmp_path: Path, options, message) -> None:
    """The eval options' own checks, as ``tribyol eval`` runs them: the source does not exist,
    so an answer other than this ConfigError means something was loaded first. The error
    names the argument (``k``), not the CLI's flag (``--k``)."""
    from tribyol.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        tribyol.evaluate(tmp_path / "no-such-run", "knn", **options)


def test_api_errors_name_arguments_and_config_keys_not_flags(tmp_path: Path) -> None:
    from tribyol.config.fields import flag_name
    from tribyol.errors import ConfigError, DatasetNotFoundError

    runs = tmp_path / "runs"
    with pytest.raises(DatasetNotFoundError) as err:
        tribyol.pretrain(None, {"data.dataset": "mnist", "data.root": str(tmp_path / "empty"),
                                "train.accelerator": "cpu", "runs_root": str(runs)})
    message = str(err.value)
    assert "point data.root at" in message and "pass data.download=True" in message
    assert "--" not in message
    # outside the API the same checks name the flags, as the CLI shows them
    from tribyol.eval.options import KnnOptions

    with pytest.raises(ConfigError, match=r"^--k must be"):
        KnnOptions(k=0)
    assert flag_name("limit_train") == "--limit-train"


def test_api_run_directory_errors_name_arguments_not_flags(tmp_path: Path) -> None:
    """Run-directory errors (engine.rundir, engine.run, the name check) through the API name
    ``resume=True``, ``overwrite=True``, ``name`` and ``runs_root``: the API has no flags."""
    from tribyol.errors import ConfigError, RunDirExistsError

    tiny = {"data.dataset": "digits", "data.limit": 64, "train.batch_size": 16,
            "train.max_steps": 1, "model.width": 8, "train.accelerator": "cpu",
            "train.precision": "32", "train.progress_bar": False, "runs_root": str(tmp_path / "runs"),
            "name": "r"}
    tribyol.pretrain(None, tiny)
    (tmp_path / "runs" / "mine").mkdir()
    (tmp_path / "runs" / "mine" / "README.md").write_text("my notes")
    messages = {}
    for what, overrides, how, error in [
        ("exists", {}, {}, RunDirExistsError),
        ("no such run", {"name": "nope"}, {"resume": True}, FileNotFoundError),
        ("not a run", {"name": "mine"}, {"overwrite": True}, RunDirExistsError),
        ("other network", {"method.name": "byol"}, {"resume": True}, ConfigError),
        ("bad name", {"name": "."}, {}, ConfigError),
    ]:
        with pytest.raises(error) as err:
            tribyol.pretrain(None, {**tiny, **overrides}, **how)
        messages[what] = str(err.value)
    assert all("--" not in m for m in messages.values()), messages
    assert messages["exists"].endswith("Pass resume=True to continue it, overwrite=True to "
                                       "replace it, or name to start a new one.")
    assert "drop resume=True to start a new run, or check runs_root/name" in messages["no such run"]
    assert "Pick another name or runs_root" in messages["not a run"]
    assert f"config='{tmp_path / 'runs' / 'r' / 'config.yaml'}' resume=True" in messages["other network"]
    assert "use runs_root for the parent folder" in messages["bad name"]


def test_pretrain_on_a_gpu_this_machine_lacks_names_the_config_key(tmp_path: Path) -> None:
    import torch

    from tribyol.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no usable CUDA GPU") as err:
        tribyol.pretrain(None, {"train.accelerator": "gpu", "runs_root": str(tmp_path)})
    assert str(err.value).endswith("use train.accelerator='cpu' (or auto)")


def test_evaluate_refuses_a_device_this_machine_lacks(tmp_path: Path) -> None:
    import torch

    from tribyol.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="^device='cuda': CUDA is not available") as err:
        tribyol.evaluate(tmp_path / "no-such-run", "linear", device="cuda")
    assert str(err.value).endswith("use device='cpu'")


def test_evaluate_defaults_are_the_eval_options() -> None:
    import inspect

    from tribyol.eval.options import DatasetOptions, EvalOptions, KnnOptions

    params = inspect.signature(tribyol.evaluate).parameters
    for name, owner in [("k", KnnOptions), ("temperature", KnnOptions), ("seed", EvalOptions),
                        ("data_root", EvalOptions), ("limit_train", EvalOptions),
                        ("limit_test", EvalOptions), ("device", EvalOptions),
                        ("dataset", DatasetOptions), ("test_from_train", DatasetOptions),
                        ("download", EvalOptions)]:
        assert params[name].default == getattr(owner, name), name


def test_build_method_passes_backbone_name_to_the_context(tmp_path: Path, monkeypatch) -> None:
    """supervised-imagenet looks for the weights of the named architecture, not of the one
    guessed from the layout (a resnet18 here)."""
    import torch

    from tribyol.nets import build_backbone

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    net = build_backbone("resnet18", 3, 224)
    with pytest.raises(FileNotFoundError, match="ImageNet weights for resnet50 not found"):
        tribyol.build_method("supervised-imagenet", net, image_size=224, backbone_name="resnet50")
    with pytest.raises(FileNotFoundError, match="ImageNet weights for resnet18 not found"):
        tribyol.build_method("supervised-imagenet", net, image_size=224)  # guessed from the layout


def test_build_method_heads_default_to_the_model_config() -> None:
    import inspect

    from tribyol.config import ModelConfig
    from tribyol.methods import MethodContext
    from tribyol.nets import build_backbone

    params = inspect.signature(tribyol.build_method).parameters
    assert (params["hidden_dim"].default, params["proj_dim"].default) == (512, 128)
    assert (params["hidden_dim"].default, params["proj_dim"].default) == (
        ModelConfig.hidden_dim, ModelConfig.proj_dim)
    ctx = MethodContext(build_backbone("convnet", in_channels=1, image_size=16, width=8))
    assert (ctx.hidden_dim, ctx.proj_dim) == (ModelConfig.hidden_dim, ModelConfig.proj_dim)
