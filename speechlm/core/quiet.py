"""Keep third-party noise out: downloads speechlm never needs, progress bars in log files.

Importing ESPnet imports ``g2p_en`` (for phoneme tokenizers, which speechlm does not use),
and ``g2p_en`` calls ``nltk.download`` at import for each NLTK data package it cannot
find. Offline, each attempt waits on the network and prints an error: seconds per
process. ``no_nltk_downloads`` turns those calls into a logged no-op for the duration of
a ``with`` block only, so nothing changes for the rest of the process (an explicit
``nltk.download`` afterwards works as usual)::

    with no_nltk_downloads():
        from espnet2.bin.asr_inference import Speech2Text

Subprocesses get the same by running a module through this one::

    python -m speechlm.core.quiet espnet2.bin.asr_train --ngpu 0 ...

``no_loading_bars`` hides transformers' per-tensor "Loading weights" bar while a model
loads, when standard error is not a terminal: in a recipe's log file each load left a
bar of carriage-return updates and no information (a small model loads in a second).

>>> with no_nltk_downloads():
...     pass
>>> with no_loading_bars(tty=False):
...     pass
"""

from __future__ import annotations

import logging
import runpy
import sys
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


def _skip_download(info_or_id: object = None, *args: object, **kwargs: object) -> bool:
    logger.info("NLTK data %r not downloaded (speechlm does not use it; if you do, set "
                "NLTK_DATA to a directory that holds it)", info_or_id)
    return False  # what nltk.download returns when a download fails


@contextmanager
def no_nltk_downloads() -> Iterator[None]:
    """Inside the block, ``nltk.download`` logs and returns False instead of downloading.

    Nothing happens when NLTK is not installed (then nothing can download).
    """
    try:
        import nltk
    except ImportError:
        yield
        return
    saved = nltk.download
    nltk.download = _skip_download
    try:
        yield
    finally:
        nltk.download = saved


@contextmanager
def no_loading_bars(tty: bool | None = None) -> Iterator[None]:
    """Inside the block, transformers shows no progress bars unless ``tty`` (default: whether
    standard error is a terminal); the earlier setting is restored after it."""
    from transformers.utils import logging as hf_logging

    if tty is None:
        tty = sys.stderr.isatty()
    was_on = hf_logging.is_progress_bar_enabled()
    if was_on and not tty:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on and not tty:
            hf_logging.enable_progress_bar()


def main(argv: list[str] | None = None) -> None:
    """``python -m speechlm.core.quiet MODULE [ARGS...]``: run MODULE as ``__main__``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: python -m speechlm.core.quiet MODULE [ARGS...]")
    sys.argv = argv  # the module sees its own name and arguments, as with python -m
    with no_nltk_downloads():
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
