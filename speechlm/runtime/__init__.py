"""The one LLM runtime over transformers models. Knows tokens, caches and devices, not speech.

Lands with the runtime issue; the package exists now so the import contracts cover it.
"""
