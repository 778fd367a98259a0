"""User-facing errors: which exceptions the console scripts report as one line, and how.

Every console script (``r1lab``, ``r1lab-eval``, ``r1lab-report``, ``r1lab-compare``) catches
``USER_ERRORS`` (bad config, missing files, unknown keys; :class:`ConfigError`, what start-up
validation raises, is a ``ValueError``)
and hands them to :func:`fail`: one ``r1lab: error: ...`` line on stderr and exit code 2, or the
traceback with ``R1LAB_TRACEBACK=1``. It lives at the bottom of the layers (it imports nothing of
r1lab), so the evaluation scripts need not import the training entry point ``r1lab.cli``.
"""
from __future__ import annotations

import os
import sys

USER_ERRORS = (ValueError, FileNotFoundError, KeyError)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field and the fix."""


def fail(err: BaseException) -> None:
    """Report ``err`` in one line and exit 2 (re-raise it when ``R1LAB_TRACEBACK=1``)."""
    if os.environ.get("R1LAB_TRACEBACK") == "1":
        raise err
    msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    print(f"r1lab: error: {msg}\n(set R1LAB_TRACEBACK=1 for the traceback)", file=sys.stderr)
    sys.exit(2)
