"""How an exception becomes the CLI's one-line error: what went wrong and what to do about it.

Checks in ie_jax raise ValueError with a message that already names the problem and the fix; the OS, the
JSON parser and the decoder raise messages that do not. `one_line(exc)` turns each into a single line with
the file concerned and a fix. Anything else is an internal error: its type and message, and `--debug` for the
traceback.
"""

from __future__ import annotations

import json

# Exceptions a user's input or environment can cause: reported as errors (exit status 2), not as crashes.
USER_ERRORS = (ValueError, OSError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError)


def one_line(exc: BaseException) -> str:
    """A single line naming the problem and, where it is known, the fix."""
    if isinstance(exc, PermissionError):
        text = f"permission denied on {exc.filename}: choose a path you can read and write, or fix its permissions"
    elif isinstance(exc, NotADirectoryError):
        text = f"{exc.filename}: a file stands where a directory is needed: choose another --out or move the file"
    elif isinstance(exc, IsADirectoryError):
        text = f"{exc.filename} is a directory where a file is needed: give a file path"
    elif isinstance(exc, FileExistsError):
        text = f"{exc.filename} already exists: choose another path or delete it"
    elif isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or exc}: {exc.filename}"
    elif isinstance(exc, UnicodeDecodeError):
        text = f"not UTF-8 text ({exc.reason} at byte {exc.start}): give a UTF-8 .txt or .jsonl file"
    elif isinstance(exc, json.JSONDecodeError):
        text = f"not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
    elif isinstance(exc, KeyError):
        text = f"missing key {exc.args[0]!r}" if exc.args else "missing key"
    elif isinstance(exc, USER_ERRORS):
        text = str(exc) or type(exc).__name__
    else:
        text = f"internal error {type(exc).__name__}: {exc} (rerun with --debug for the traceback and report it)"
    return " ".join(text.split())  # one line, whatever the message held


def exit_status(exc: BaseException) -> int:
    """2 for a user's mistake (argparse's convention), 1 for an internal error."""
    return 2 if isinstance(exc, USER_ERRORS) else 1
