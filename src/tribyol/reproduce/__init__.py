"""``tribyol reproduce GRID.yaml``: run a grid of pre-trainings and evaluations, then tables.

A grid is data (``configs/grids/*.yaml``); its keys, how cells are formed, resumed and
reported: docs/reproduce.md. The modules, each importing only those above it:

- ``cells``: a cell (one pre-training and its evaluations), its config tree and id;
- ``scoring``: what a grid is scored on (``select_on``), the subset outside the carves;
- ``data``: the grid's dataset folder, pre-training subset and validation manifest;
- ``cost``: planned steps and the cost model (seconds, until cells measure it);
- ``equal_compute``: BYOL rows trained as long as another arm costs;
- ``grid``: a grid file expanded into cells, ``--only`` and shared runs;
- ``runner``: running the cells as ``tribyol`` child processes, skipping and resuming;
- ``tables``: the results as poster-shaped tables;
- ``cli``: the ``reproduce`` sub-command."""

from tribyol.reproduce.cli import add_commands

__all__ = ["add_commands"]
