"""One-line error messages: what the CLI and the loaders show of an exception from a library."""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, stripped; "" when it has none.

    Libraries (torch's unpickler, safetensors, Dynamo) raise multi-line messages; composeseg
    names the file and puts this line after it.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
