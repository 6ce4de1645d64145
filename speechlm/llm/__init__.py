"""Where speech meets the LLM: rescoring, error correction, SLU (lands with later issues)."""
