"""Word lattices, N-best lists and confusion networks (imports only ``speechlm.core``).

The Lattice, Nbest and ConfusionNetwork types land with the lattice issue; the package
exists now so that the import contracts in pyproject.toml cover it from the start.
"""
