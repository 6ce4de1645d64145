"""speechlm: speech recipes, lattices and confusion networks, and an LLM second pass.

The public Python API (``speechlm/api.py``), loaded on first use so that
``import speechlm`` stays instant:

>>> import speechlm
>>> sorted(speechlm.__all__)[:3]
['ASR', 'AudioLimits', 'AudioRejected']

See ``speechlm.load_asr``, ``speechlm.load_llm`` and the README's "Python API".
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = ("ASR", "AudioLimits", "AudioRejected", "Transcript", "load_asr",
        "load_llm", "read_audio_input", "rescore", "rescore_nbest", "rescored_json", "slu")
__all__ = ["ASR", "AudioLimits", "AudioRejected", "Transcript", "__version__",
           "load_asr", "load_llm", "read_audio_input", "rescore", "rescore_nbest",
           "rescored_json", "slu"]

if TYPE_CHECKING:
    from speechlm.api import (
        ASR,
        AudioLimits,
        AudioRejected,
        Transcript,
        load_asr,
        load_llm,
        read_audio_input,
        rescore,
        rescore_nbest,
        rescored_json,
        slu,
    )


def __getattr__(name: str) -> Any:
    # Lazy: the API pulls in numpy at once and torch/ESPnet/PocketSphinx on use; a plain
    # ``import speechlm`` (the CLI, the import linter) should not pay for that.
    if name in _API:
        from speechlm import api

        return getattr(api, name)
    raise AttributeError(f"module 'speechlm' has no attribute {name!r}")
