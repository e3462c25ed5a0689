"""Any timm encoder (``--backbone timm:NAME``), built for the data's band count; nothing is
downloaded.

The encoder is timm's own model (``num_classes=0``, so ``forward`` gives pooled features
``[B, num_features]``), with ``out_dim`` set: its ``state_dict`` is timm's, so exported weights
load into ``timm.create_model(NAME, in_chans=N, num_classes=0)`` with strict keys.
"""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

import torch
from torch import nn

from tribyol.errors import CheckpointError, ConfigError, torch_load_reason

PREFIX = "timm:"


def close_names(name: str, n: int = 5) -> list[str]:
    """timm architectures whose names are closest to ``name`` (for an unknown-name error)."""
    import timm

    return difflib.get_close_matches(name, timm.list_models(), n=n, cutoff=0.5)


def check_name(name: str) -> None:
    """``ConfigError`` (one line, the closest timm names) unless ``name`` (``timm:`` prefix
    optional, a pretrained tag such as ``.a1_in1k`` allowed) is a timm architecture."""
    import timm
    from timm.models import split_model_name_tag

    bare = name[len(PREFIX):] if name.startswith(PREFIX) else name
    arch, _ = split_model_name_tag(bare)
    if not arch or not timm.is_model(arch):
        near = close_names(arch) if arch else []
        hint = (f"did you mean {', '.join(PREFIX + n for n in near)}?" if near
                else "see timm.list_models() for the names")
        raise ConfigError(f"unknown backbone '{PREFIX}{bare}': timm has no model {arch!r}; {hint}")


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A local ``.safetensors`` or torch state dict (``weights_only=True``), unwrapped from a
    ``state_dict`` / ``model`` key and a ``module.`` prefix by timm's ``load_state_dict``."""
    from timm.models import load_state_dict

    if not path.is_file():
        raise FileNotFoundError(f"model.weights {path} does not exist; give the path of a "
                                ".safetensors or .pt file on this machine")
    try:
        quiet = logging.getLogger("timm.models._helpers")  # its "Loaded ..." line, per file
        level, quiet.level = quiet.level, logging.WARNING
        try:
            return load_state_dict(str(path), use_ema=False, weights_only=True)
        finally:
            quiet.setLevel(level)
    except Exception as err:  # safetensors and torch.load raise many types for bad files
        raise CheckpointError(f"model.weights {path} cannot be read as weights: "
                              f"{torch_load_reason(err)}; give a .safetensors or a torch "
                              "state dict") from err


def _first_conv_keys(model: nn.Module) -> list[str]:
    first = getattr(model, "pretrained_cfg", {}).get("first_conv") or ()
    return [f"{name}.weight" for name in ([first] if isinstance(first, str) else first)]


def adapt_state(model: nn.Module, state: dict[str, torch.Tensor],
                in_chans: int) -> dict[str, torch.Tensor]:
    """``state`` made to fit ``model``: the classifier (``num_classes=0`` has none) dropped, and
    the first conv's input channels adapted by timm's ``adapt_input_conv`` (RGB weights
    repeated over 13 bands and rescaled, or summed for 1 band) when they differ."""
    from timm.models import adapt_input_conv

    state = dict(state)
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    for head in [classifier] if isinstance(classifier, str) else classifier:
        if f"{head}.weight" not in model.state_dict():
            state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
    for key in _first_conv_keys(model):
        weight = state.get(key)
        if weight is not None and weight.ndim == 4 and weight.shape[1] != in_chans:
            state[key] = adapt_input_conv(in_chans, weight, base_chans=weight.shape[1])
    return state


def _shape_problem(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} (model: {tuple(v.shape)})" for k, v in own.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        return f"{len(wrong)} tensors have the wrong shape, first {wrong[0]}"
    if missing or unexpected:
        first = (missing or unexpected)[0]
        return f"{len(missing)} keys missing and {len(unexpected)} unexpected, first {first!r}"
    return None


def load_weights(model: nn.Module, path: str | Path, in_chans: int) -> None:
    """Load ``model.weights`` into ``model`` with strict keys (after ``adapt_state``); a file
    for another architecture is one ``ConfigError`` line naming the first misfit tensor."""
    state = adapt_state(model, _read_weights(Path(path).expanduser()), in_chans)
    problem = _shape_problem(model, state)
    if problem:
        arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        raise ConfigError(f"model.weights {path} does not fit timm:{arch} with {in_chans} "
                          f"band{'s' if in_chans != 1 else ''}: "
                          f"{problem}; give weights saved from this model")
    model.load_state_dict(state, strict=True)


def _create(name: str, in_chans: int, image_size: int | None) -> nn.Module:
    """``timm.create_model`` offline; ``image_size`` reaches the models built for one input size
    (ViTs' ``img_size``), and is left out for the others, which take any size."""
    import timm

    kwargs = {"pretrained": False, "num_classes": 0, "in_chans": in_chans}
    if image_size is not None:
        try:
            return timm.create_model(name, img_size=image_size, **kwargs)
        except TypeError as err:  # a model without a fixed input size (ResNet, ConvNeXt ...)
            if "img_size" not in str(err):
                raise
    return timm.create_model(name, **kwargs)


def timm_encoder(name: str, in_chans: int, weights: str | Path | None = None,
                 image_size: int | None = None) -> nn.Module:
    """timm's ``name`` (``timm:`` prefix optional) for ``in_chans`` bands, no classifier,
    ``out_dim = num_features``; ``weights``: a local file (``load_weights``); ``image_size``:
    the input side, for ViTs. Unknown names: ``ConfigError`` with the closest timm names."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX):]
    check_name(name)
    model = _create(name, in_chans, image_size)
    if weights is not None:
        load_weights(model, weights, in_chans)
    model.out_dim = int(model.num_features)
    return model
