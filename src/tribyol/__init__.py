"""tribyol: self-supervised representation learning that stays accurate with small batches."""

__version__ = "0.1.0"
