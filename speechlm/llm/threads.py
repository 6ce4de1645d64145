"""Torch's intra-op thread count for the length of a ``with`` block.

Trainers take a ``threads`` option (one thread by default in the recipes: the machine is
shared, and benches compare one thread to one thread); the caller's setting comes back
afterwards, also when training fails.

>>> import torch
>>> before = torch.get_num_threads()
>>> with torch_threads(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` threads inside the block (``None``: leave the count as it is)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
