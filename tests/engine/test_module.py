"""The EMA inside the engine: after the optimizer step, with its updated weights, and never
after a step the fp16 grad scaler skipped."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tribyol.engine import pretrain


def params(module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


class Snapshots(L.Callback):
    """Online and target weights after every training batch (EMA included)."""

    def __init__(self, skip_step: int | None = None) -> None:
        self.skip_step, self.online, self.target, self._hook = skip_step, [], [], None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.online.append(params(module.method.online))
            self.target.append(params(module.method.target))
        if batch_idx == self.skip_step:
            # An inf gradient before the scaler unscales: GradScaler must skip optimizer.step().
            p = next(module.method.online.parameters())
            self._hook = p.register_hook(lambda g: torch.full_like(g, float("inf")))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.online.append(params(module.method.online))
        self.target.append(params(module.method.target))


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def fp16_grad_scaling_on_cpu(monkeypatch) -> torch.amp.GradScaler:
    """Lightning's fp16 MixedPrecision steps, with a real GradScaler, inside the fp32 plugin.

    Lightning turns ``16-mixed`` into ``bf16-mixed`` on CPUs (no scaler), so the scaler's
    loss scaling and step skipping are grafted onto the plain precision plugin here.
    """
    from types import SimpleNamespace

    from lightning.pytorch.plugins.precision import MixedPrecision, Precision

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    pre_backward = Precision.pre_backward

    def scaled_backward(self, tensor, module):
        return pre_backward(self, scaler.scale(tensor), module)

    def scaler_step(self, optimizer, model, closure, **kwargs):
        plugin = SimpleNamespace(scaler=scaler, _after_closure=self._after_closure)
        return MixedPrecision.optimizer_step(plugin, optimizer, model, closure, **kwargs)

    monkeypatch.setattr(Precision, "pre_backward", scaled_backward)
    monkeypatch.setattr(Precision, "optimizer_step", scaler_step)
    return scaler


def test_fp16_skipped_step_skips_the_ema_too(tiny, monkeypatch):
    scaler = fp16_grad_scaling_on_cpu(monkeypatch)
    snaps = Snapshots(skip_step=1)
    pretrain(tiny(("method.name", "byol"), ("method.tau", 0.5), ("train.online_probe", False)),
             extra_callbacks=[snaps])
    assert scaler.get_scale() == 2.0**7  # backed off once: exactly one step was skipped
    # snapshots: before step 0, then after steps 0, 1 (skipped), 2, 3
    online, target = snaps.online, snaps.target
    assert len(online) == 5
    assert same(online[2], online[1]), "the scaler should have skipped the optimizer step"
    assert same(target[2], target[1]), "the EMA ran after a skipped optimizer step"
    for k in (1, 3, 4):  # normal steps move both
        assert not same(online[k], online[k - 1]) and not same(target[k], target[k - 1]), k


PAIRS = {"byol": ("method.online.", "method.target."),
         "tribyol": ("method.online.", "method.targets.0."),
         "cross": ("method.online.", "method.target.")}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_ema_uses_the_updated_online_weights(tiny, name):
    """With tau = 0 each EMA step copies the online weights: after the run the targets must
    equal the final online weights (an EMA before optimizer.step would hold the previous ones)."""
    from tribyol.checkpoints import load_checkpoint

    run = pretrain(tiny(("method.name", name), ("method.tau", 0.0), ("train.max_steps", 3)))
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")["state_dict"]
    online_prefix, target_prefix = PAIRS[name]
    online = {k[len(online_prefix):]: v for k, v in state.items() if k.startswith(online_prefix)}
    target = {k[len(target_prefix):]: v for k, v in state.items() if k.startswith(target_prefix)}
    checked = 0
    for key, value in online.items():
        if value.is_floating_point() and "running_" not in key:  # parameters, not BN statistics
            torch.testing.assert_close(target[key], value, rtol=0, atol=0, msg=key)
            checked += 1
    assert checked > 10
