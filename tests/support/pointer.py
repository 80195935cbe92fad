"""JSON pointers (RFC 6901): how the model card names each figure's place in `/model` or `/drift`."""

from __future__ import annotations

from typing import Any


def resolve(document: Any, pointer: str) -> Any:
    """The value at ``pointer`` ("/metrics/test/accuracy") in a parsed JSON ``document``."""
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def shows(shown: str, value: Any) -> bool:
    """Whether a page's `data-value` text ``shown`` is ``value`` (a number, a string or null)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return shown == str(value)
    return float(shown) == float(value)
