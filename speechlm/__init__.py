"""speechlm: speech recipes, lattices and confusion networks, and an LLM second pass.

The public Python API stays small; it grows with the decoding API issue.
"""
__version__ = "0.1.0"
__all__ = ["__version__"]
