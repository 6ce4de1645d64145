"""Entry points: ``python -m speechlm.bin.<name>`` or ``speechlm <name>``.

Each module defines ``add_arguments(parser)``, ``run(args) -> int`` and ``main(argv=None)``;
its docstring's first line is the help shown by ``speechlm --help``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

# Bad input (a missing file, a malformed data dir, a wrong option value) raises one of these;
# the user gets the message, not a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def command_main(prog: str, doc: str | None, add_arguments: Callable, run: Callable,
                 argv: list[str] | None = None) -> int:
    """Parse ``argv`` for one command and run it; bad input becomes one line and exit 1."""
    # Our own progress at INFO; libraries (ESPnet's beam search logs every utterance at
    # INFO) only from WARNING up.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("speechlm").setLevel(logging.INFO)
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(run(args) or 0)
    except USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
