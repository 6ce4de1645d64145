"""Fixtures shared by the lattice tests."""
from __future__ import annotations

import pytest

from speechlm.lattice import Lattice


@pytest.fixture
def diamond() -> Lattice:
    from speechlm.testing.lattice import lattice_from_text

    return lattice_from_text("""
        0 1 a -1.0 -0.5
        0 1 b -2.0 -0.2
        0 2 <eps> -0.5 -1.0
        1 3 c -1.0
        2 3 c -3.0
        2 3 d -1.5 -0.5
        3 4 e -0.3
        1 4 f -2.5
        4 -0.1 -0.2
        3 -1.0
    """, utt="diamond")
