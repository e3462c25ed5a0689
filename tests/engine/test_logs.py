"""A run's loggers: they pickle, as ddp_spawn needs."""

from __future__ import annotations


def test_the_trainers_loggers_pickle_for_ddp_spawn(tiny, tmp_path):
    """ddp_spawn pickles the trainer's loggers; a logger class defined inside a function cannot
    be pickled (it broke --strategy ddp_spawn)."""
    import pickle

    from tribyol.engine import build_trainer

    trainer = build_trainer(tiny(), tmp_path / "run")
    assert len(pickle.loads(pickle.dumps(trainer.loggers))) == len(trainer.loggers)
