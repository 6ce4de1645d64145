"""The two kinds of error a user can fix, apart from bugs.

Library code raises these (or subclasses) for what it was given, so the command line can
report them as one line with an exit code of their own (``speechlm.bin``) and still show
the full traceback of anything else. Both are ``ValueError`` s, so ``except ValueError``
around older call sites keeps working.

>>> issubclass(UsageError, ValueError) and issubclass(InputError, ValueError)
True
"""

from __future__ import annotations


class UsageError(ValueError):
    """A bad option value or combination, or a bad config file: the command line exits 2."""


class InputError(ValueError):
    """Bad input data (a missing or malformed file, data dir, model dir or audio): exit 1."""
