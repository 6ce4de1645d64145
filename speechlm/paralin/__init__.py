"""ParalinGPT (Lin et al. 2023, arXiv 2312.15316): serialized multitask sentiment and response
generation from dialogue context (and speech embeddings) with a LoRA-tuned LLM.

- :mod:`speechlm.paralin.meld`: MELD-form CSVs, dialogue windows.
- :mod:`speechlm.paralin.serialize`: prompt and target format, the generation parser.
- :mod:`speechlm.paralin.model`: training (LoRA), label decoding by rank classification,
  response generation, the metrics.
"""
