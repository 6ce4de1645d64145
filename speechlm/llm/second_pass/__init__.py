"""Second pass on N-best lists: LLM rescoring, prompting, task-activating prompting,
generative error correction (GER) and discriminative MWER scorers.

Modules: ``nbest`` (the HyPoradise form, bad-input notes, the speaker split rule),
``prompt`` (chats), ``methods`` (the method switch, tuning on dev, the GER guard),
``mwer`` (the loss, pooling heads, training and loading a scorer dir), ``pll``
(pseudo-log-likelihood of a fine-tuned masked LM, the bidirectional baseline), ``evaluate``
(WER, oracle), ``run`` (one method end to end over train/dev/eval sets).
"""
