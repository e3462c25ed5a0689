"""Packing ``reproduce --jobs N`` onto the machine: each concurrent cell's child processes get a
slot, with its GPU (round-robin over the visible ones), its share of the host's cores, and a cap
on its share of that GPU's memory (docs/reproduce.md "Packing")."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
from collections.abc import Iterator

# Read by ``engine.trainer.cap_cuda_memory``: the fraction of the GPU's memory a run may take.
MEMORY_FRACTION_ENV = "TRIBYOL_CUDA_MEMORY_FRACTION"


def gpu_count() -> int:
    """CUDA devices this process sees (0 without CUDA); the tests fake it."""
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def visible_gpus() -> list[str]:
    """The GPUs children may be pinned to, as ``CUDA_VISIBLE_DEVICES`` names them: the parent's
    own list when it has one (``3,5`` -> ``["3", "5"]``), else ``0 .. count - 1``."""
    count = gpu_count()
    listed = [n.strip() for n in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if n.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def host_cores() -> int:
    """Cores this process may run on (its affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class Slot:
    """What one concurrent cell's commands run with; None: inherited from the parent."""

    index: int
    gpu: str | None = None  # the child's CUDA_VISIBLE_DEVICES: it sees this GPU as cuda:0
    threads: int | None = None  # OMP_NUM_THREADS
    memory_fraction: float | None = None  # of its GPU's memory (engine.trainer.cap_cuda_memory)

    def env(self) -> dict[str, str]:
        env = {} if self.threads is None else {"OMP_NUM_THREADS": str(self.threads)}
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        if self.memory_fraction is not None:
            env[MEMORY_FRACTION_ENV] = f"{self.memory_fraction:.6g}"
        return env

    def describe(self) -> str:
        device = "cpu" if self.gpu is None else f"GPU {self.gpu} (cuda:0 in the child)"
        threads = "inherited" if self.threads is None else str(self.threads)
        cap = "" if self.memory_fraction is None else f", memory cap {self.memory_fraction:.3g}"
        return f"{device}, {threads} thread(s){cap}"


def plan_slots(jobs: int, gpus: list[str], cores: int, threads: str | None = None) -> list[Slot]:
    """``jobs`` slots: GPUs round-robin (``gpus[i % len(gpus)]``), each GPU's memory split
    evenly between the slots on it, ``cores // jobs`` threads each (at least 1) unless
    ``threads`` (the parent's OMP_NUM_THREADS) is set. One job inherits everything, as before."""
    if jobs <= 1:
        return [Slot(0)]
    per_process = int(threads) if threads and threads.isdigit() else max(1, cores // jobs)
    slots = []
    for i in range(jobs):
        gpu = gpus[i % len(gpus)] if gpus else None
        sharing = sum(1 for j in range(jobs) if j % len(gpus) == i % len(gpus)) if gpus else 0
        slots.append(Slot(i, gpu, per_process, 1.0 / sharing if gpu is not None else None))
    return slots


class SlotPool:
    """The slots of the cells running now: a cell takes a free one and gives it back at its end,
    so N running cells always hold N different slots (2 GPUs x 4 jobs: two cells per GPU)."""

    def __init__(self, slots: list[Slot]) -> None:
        self.slots = slots
        self._free: queue.Queue[Slot] = queue.Queue()
        for slot in slots:
            self._free.put(slot)

    @contextlib.contextmanager
    def take(self) -> Iterator[Slot]:
        slot = self._free.get()
        try:
            yield slot
        finally:
            self._free.put(slot)

    def describe(self) -> str:
        """One line for the plan: where the concurrent cells run."""
        if len(self.slots) <= 1:
            return "packing: one cell at a time, with the parent's devices and threads"
        gpus = sorted({s.gpu for s in self.slots if s.gpu is not None})
        where = (f"{len(self.slots)} cells at once on GPU(s) {', '.join(gpus)} (round-robin)"
                 if gpus else f"{len(self.slots)} cells at once on the CPU")
        return f"packing: {where}; each: {self.slots[0].describe()}"


def pool_for(jobs: int, accelerator: str) -> SlotPool:
    """The slots of ``jobs`` concurrent cells of a grid whose ``train.accelerator`` is given."""
    gpus = [] if jobs <= 1 or accelerator in ("cpu", "mps") else visible_gpus()
    return SlotPool(plan_slots(jobs, gpus, host_cores(), os.environ.get("OMP_NUM_THREADS")))
