"""A bound on how deeply JSON may nest, checked on the raw text before anything parses it.

Python's JSON parsers recurse once per level: 5,000 nested arrays or 100,000 nested objects end in a
RecursionError (a 500), in Flask's ``get_json``, in webargs and in our own ``json.loads`` of form
fields alike. Every JSON request body is scanned once here (``init_json_depth_limit``: API, mobile API,
pages), and the pages that take JSON typed into a form field call :func:`check_json_field`. Deeper than
``JSON_MAX_DEPTH`` (``FLOWDESK_JSON_MAX_DEPTH``, 64) is a 400 (body) or a 422 on the field."""

from __future__ import annotations

import itertools
import re

from flask import Flask, current_app, request

from ..errors import AppError, ValidationFailed

# A JSON string, escapes included: its brackets are text, not nesting. Possessive (no backtracking), and an
# unterminated string runs to the end (else each later quote would start a scan of the rest: quadratic).
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def json_depth(raw: bytes) -> int:
    """How deeply the JSON text ``raw`` nests (arrays and objects; malformed text is measured as written)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(0, max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0))


def _too_deep(raw: bytes) -> int | None:
    """The depth of ``raw`` if it is past the limit, else None (cheap when it has few brackets)."""
    limit = current_app.config["JSON_MAX_DEPTH"]
    if raw.count(b"[") + raw.count(b"{") <= limit:  # cannot nest deeper than it has openers
        return None
    depth = json_depth(raw)
    return depth if depth > limit else None


def check_json_field(text: str, field: str) -> None:
    """422 on ``field`` if the JSON typed into it nests deeper than the limit."""
    depth = _too_deep(text.encode("utf-8", "surrogatepass"))
    if depth is not None:
        limit = current_app.config["JSON_MAX_DEPTH"]
        raise ValidationFailed(f"the JSON in '{field}' nests {depth} levels deep; at most {limit} are accepted",
                               errors=[{"field": field, "message": f"nested deeper than {limit} levels"}])


def init_json_depth_limit(app: Flask) -> None:
    """Refuse every JSON request body nested deeper than ``JSON_MAX_DEPTH``, before any view parses it."""

    @app.before_request
    def _check_json_depth():
        if not request.is_json or not (request.content_length or request.headers.get("Transfer-Encoding")):
            return None
        depth = _too_deep(request.get_data(cache=True))  # kept: the view's parser reads the same bytes
        if depth is not None:
            limit = app.config["JSON_MAX_DEPTH"]
            raise AppError(f"the JSON body nests {depth} levels deep; at most {limit} are accepted")
        return None
