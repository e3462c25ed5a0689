"""The config route: OmegaConf builds the dataclasses; what tribyol reads differently from it,
and what a run's saved config.yaml allows."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tribyol.config import to_dict
from tribyol.errors import ConfigError
from tribyol.resolve import load_config


@pytest.mark.parametrize("value", [[0, 1], [0], 2, -1, "auto", "0,1"])
def test_device_lists_and_counts_are_accepted(value) -> None:
    assert load_config(None, [("train.devices", value)]).train.devices == value


@pytest.mark.parametrize("value", [None, [], 0, [-1]])
def test_impossible_devices_are_refused(value) -> None:
    with pytest.raises(ConfigError, match="train.devices must be auto, a count >= 1"):
        load_config(None, [("train.devices", value)])


def test_whole_numbers_may_be_written_as_floats() -> None:
    cfg = load_config(None, ["train.max_steps=1e4", "train.epochs=3.0", "data.image_size=32.0"])
    assert (cfg.train.max_steps, cfg.train.epochs, cfg.data.image_size) == (10000, 3, 32)
    with pytest.raises(ConfigError, match="train.epochs: expected a whole number, got 1.5"):
        load_config(None, ["train.epochs=1.5"])


@pytest.mark.parametrize("key", ["data.download", "model.small_stem", "method.symmetric"])
def test_a_number_is_not_a_switch(key: str) -> None:
    with pytest.raises(ConfigError, match=f"{key}: expected true or false, got 2"):
        load_config(None, [f"{key}=2"])


@pytest.mark.parametrize("value", ["${oc.env:HOME}/data", "/tmp/${foo}", "???"])
def test_omegaconf_interpolation_is_text_we_refuse(value: str) -> None:
    with pytest.raises(ConfigError, match="data.root: .* is OmegaConf interpolation syntax"):
        load_config(None, [("data.root", value)])


def test_malformed_trees_are_one_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="method.name: expected a method's name"):
        load_config(None, ["method.name.foo=1"])
    file = tmp_path / "int_key.yaml"
    file.write_text("train: {1: 3}\n")
    with pytest.raises(ConfigError, match="train: 1 is not a key"):
        load_config(file)


def test_a_method_given_by_name_in_a_file_takes_options_after(tmp_path: Path) -> None:
    file = tmp_path / "byol.yaml"
    file.write_text("method: byol\n")
    method = load_config(file, ["method.tau=0.9"]).method
    assert (method.name, method.tau) == ("byol", 0.9)


def test_a_saved_config_can_start_another_method(tmp_path: Path) -> None:
    """config.yaml records every TriBYOL option; with --method byol the ones BYOL lacks are
    dropped (shared ones, like tau, kept), while an option typed on the command line is still
    checked against the new method."""
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(to_dict(load_config(None, ["method.tau=0.99"]))))
    method = load_config(saved, [("method.name", "byol")]).method
    assert method.name == "byol" and method.tau == 0.99 and not hasattr(method, "target_policy")
    with pytest.raises(ConfigError, match="method.target_policy is an option of tribyol, not of byol"):
        load_config(saved, [("method.name", "byol"), ("method.target_policy", "shared")])


@pytest.mark.parametrize(("key", "value"), [("augment.blur_sigma", [1.0, 0.5]),
                                            ("augment.crop_scale", [0.5, 0.2]),
                                            ("augment.crop_ratio", [2.0, 1.0])])
def test_ranges_must_run_low_to_high(key: str, value: list[float]) -> None:
    with pytest.raises(ConfigError, match=f"{key} must be \\[a, b\\] with 0 < a <= b"):
        load_config(None, [(key, value)])


def test_a_config_given_as_a_mapping_is_a_base_like_a_file() -> None:
    """tribyol.pretrain(run.config, {"method.name": "byol"}) goes through here."""
    base = to_dict(load_config(None, ["data.dataset=digits"]))
    cfg = load_config(base, [("method.name", "byol"), ("train.epochs", 2)])
    assert (cfg.method.name, cfg.train.epochs, cfg.data.dataset) == ("byol", 2, "digits")
    assert not hasattr(cfg.method, "target_policy")


@pytest.mark.parametrize(("override", "message"), [
    ("augment.crop_scale.0=0.5", "augment.crop_scale: expected a list of 2 numbers"),
    ("augment.crop_scale={}", "augment.crop_scale: expected a list of 2 numbers"),
    ("augment.solarize_p=[[1], 0.2]", "augment.solarize_p: expected a list of numbers"),
    ("augment.solarize_p=[abc, 0.2]", "augment.solarize_p: expected a list of numbers"),
    ("augment.solarize_p=['${augment.flip_p}', 0.1]", "interpolation syntax"),
    ("method.name=${oc.env:USER}", "method.name: .* is OmegaConf interpolation syntax"),
    ("train.accumulate=18446744073709551616", "train.accumulate: 18446744073709551616 is too large"),
    ("data.root=true", "data.root: expected text, got True"),
    ("model.foo=1", "unknown config key 'model.foo'. Known: activation_checkpointing, backbone, "
                     "channels_last"),
    ("train.devices=[true]", "train.devices must be auto"),
    ("train.devices=[0, 0]", "train.devices must be auto"),
    ("train.devices=foo,bar", "train.devices must be auto"),
])
def test_odd_values_are_one_config_error(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_numpy_scalars_are_plain_numbers() -> None:
    np = pytest.importorskip("numpy")
    cfg = load_config(None, [("optim.lr", np.float64(0.1)), ("train.batch_size", np.int64(8)),
                             ("method.tau", np.float32(0.5)), ("data.download", np.bool_(False))])
    assert (cfg.optim.lr, cfg.train.batch_size, cfg.method.tau, cfg.data.download) == (
        0.1, 8, 0.5, False)


def test_an_option_of_another_method_names_its_owner() -> None:
    with pytest.raises(ConfigError, match="method.num_views is an option of tribyol, not of byol"):
        load_config(None, ["method.name=byol", "method.num_views=4"])
    with pytest.raises(ConfigError, match="unknown config key 'method.bank_size'"):  # removed
        load_config(None, ["method.name=pirl-jigsaw", "method.bank_size=4096"])


def test_a_method_mapping_typed_on_the_command_line_is_checked(tmp_path: Path) -> None:
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(to_dict(load_config(None, []))))
    with pytest.raises(ConfigError, match="method.num_views is an option of tribyol"):
        load_config(saved, ["method={name: byol, num_views: 4}"])
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text("method: {num_views: 4}\n")  # the default method's option
    assert load_config(unnamed, [("method.name", "byol")]).method.name == "byol"


def test_overrides_may_be_one_string_or_a_mapping() -> None:
    from tribyol.config import RunConfig

    assert load_config(None, "optim.lr=0.1").optim.lr == 0.1
    assert load_config(None, {"optim.lr": 0.2}).optim.lr == 0.2
    assert load_config(RunConfig(), ["train.epochs=3"]).train.epochs == 3


def test_a_key_given_twice_in_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "dup.yaml"
    file.write_text("optim:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match="line 3, column 3: the key 'lr' appears twice"):
        load_config(file)


@pytest.mark.parametrize("overrides", [["train.knn_every_epochs=1"], ["data.monitor_fraction=0.1"]])
def test_the_knn_monitor_needs_both_of_its_settings(overrides: list[str]) -> None:
    with pytest.raises(ConfigError, match="the online kNN monitor needs both"):
        load_config(None, overrides)
