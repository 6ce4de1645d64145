"""ASR models and decoders (imports ``core``, ``data`` and ``lattice``; never the LLM side)."""
