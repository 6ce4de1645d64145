"""ParalinGPT (Lin et al. 2023, arXiv 2312.15316): serialized multitask sentiment and response
generation from dialogue context (and speech embeddings) with a LoRA-tuned LLM.

- :mod:`speechlm.paralin.meld`: MELD-form CSVs, dialogue windows.
- :mod:`speechlm.paralin.serialize`: prompt and target format (with speech slots), the
  generation parser.
- :mod:`speechlm.paralin.synth`: synthetic speech for MELD turns, one voice per speaker in
  a dialogue.
- :mod:`speechlm.paralin.speech`: the turns' wav.scp and their utterance embeddings
  (pooled Whisper states, Resemblyzer), cached by content.
- :mod:`speechlm.paralin.model`: training (LoRA, the speech projector), label decoding by
  rank classification, response generation, the metrics; also the single-task response
  baseline and the emotion attribute (``FormatConfig``).
- :mod:`speechlm.paralin.seqcls`: the SmolLM2 sequence-classifier baseline (two heads).
- :mod:`speechlm.paralin.baseline`: the MiniLM + logistic-regression baseline.
"""
