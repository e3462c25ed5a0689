"""Test-only hooks for `python -m tribyol.cli` subprocesses; inert unless TRIBYOL_TEST_HOOKS=1.

Put this folder on PYTHONPATH and Python imports it at start-up (and so does every DDP rank
Lightning launches, since they inherit the environment). It adds one callback to the trainer
that ``tribyol.engine.run.pretrain`` builds, so the library carries no test code:

- ``TRIBYOL_TEST_PROGRESS=FILE``: rank 0 writes the global step after every step (flushed).
- ``TRIBYOL_TEST_PAUSE_AT=N``: after step N (and after any checkpoint of that step) rank 0
  touches ``FILE.paused`` and sleeps until it is killed, or until ``FILE.continue`` appears:
  the test kills (or signals) it at a known step.
- ``TRIBYOL_TEST_DUMP_DIR=DIR``: at the end of fit each rank writes ``rank<r>.json`` with a
  SHA-256 of every tensor of its ``state_dict`` and, for SimCLR, what its last all-gather of
  embeddings returned (the local slice's hash and each rank's slice of the gathered tensor).
"""

from __future__ import annotations

import os

if os.environ.get("TRIBYOL_TEST_HOOKS") == "1":
    import hashlib
    import json
    import time
    from pathlib import Path

    import lightning as L

    import tribyol.engine.run as _run

    def _digest(t: object) -> str:
        return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()

    _gathers: dict[str, object] = {}
    try:
        import tribyol.methods.simclr as _simclr
    except ImportError:
        _simclr = None
    if _simclr is not None and hasattr(_simclr, "gather_with_grad"):
        _gather = _simclr.gather_with_grad

        def _recording_gather(x):  # type: ignore[no-untyped-def]
            out = _gather(x)
            b = x.shape[0]
            _gathers.update(local=_digest(x), local_rows=b, gathered_rows=out.shape[0],
                            slices=[_digest(out[i:i + b]) for i in range(0, out.shape[0], b)])
            return out

        _simclr.gather_with_grad = _recording_gather

    class _TestHooks(L.Callback):
        def __init__(self) -> None:
            progress = os.environ.get("TRIBYOL_TEST_PROGRESS")
            self.progress = Path(progress) if progress else None
            self.pause_at = int(os.environ.get("TRIBYOL_TEST_PAUSE_AT", "-1"))
            dump = os.environ.get("TRIBYOL_TEST_DUMP_DIR")
            self.dump = Path(dump) if dump else None

        def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: object,
                               batch: tuple, batch_idx: int) -> None:
            if not trainer.is_global_zero:
                return
            step = trainer.global_step
            if self.progress is not None:
                self.progress.write_text(str(step))
                # which batch each step trained on: a resumed run must continue with the next one
                digest = hashlib.sha256(batch[0].cpu().numpy().tobytes()).hexdigest()[:16]
                with open(f"{self.progress}.batches", "a") as f:
                    f.write(f"{step} {trainer.current_epoch} {batch_idx} {digest}\n")
            if step == self.pause_at and self.progress is not None:
                Path(f"{self.progress}.paused").touch()
                go_on = Path(f"{self.progress}.continue")
                while not go_on.exists():  # wait for SIGKILL, or to be let go
                    time.sleep(0.05)

        def on_fit_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            if self.dump is None:
                return
            hashes = {key: _digest(value) for key, value in module.state_dict().items()}
            out = {"step": trainer.global_step, "world_size": trainer.world_size,
                   "hashes": hashes, "gather": dict(_gathers)}
            self.dump.mkdir(parents=True, exist_ok=True)
            (self.dump / f"rank{trainer.global_rank}.json").write_text(json.dumps(out))

    _build_trainer = _run.build_trainer

    def _with_hooks(cfg, run_dir, extra_callbacks=None):  # type: ignore[no-untyped-def]
        return _build_trainer(cfg, run_dir, [*(extra_callbacks or []), _TestHooks()])

    _run.build_trainer = _with_hooks
