"""Fast JSON output for hot endpoints.

marshmallow schemas stay the single description of a response (they feed
/api/openapi.json); ``compiled_dumper`` turns one into a plain function that
produces exactly what ``schema.dump`` would, without marshmallow's per-field
machinery, and ``json_response`` encodes with orjson. Tests compare both
outputs on real responses (tests/test_serialize.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from flask import Response
from marshmallow import Schema, fields

Dumper = Callable[[Any], Any]
_MISSING = object()


def _getter(attribute: str) -> Callable[[Any], Any]:
    def get(obj):
        if isinstance(obj, dict):
            return obj.get(attribute, _MISSING)
        return getattr(obj, attribute, _MISSING)
    return get


def _value_dumper(field: fields.Field) -> Dumper | None:
    """A converter for one value of a simple field type, or None when marshmallow must do it."""
    if type(field) in (fields.Integer, fields.Int):
        return int
    if type(field) in (fields.String, fields.Str):
        return str
    if type(field) in (fields.Boolean, fields.Bool):
        return bool
    if type(field) is fields.DateTime and field.format in (None, "iso"):
        return datetime.isoformat
    if type(field) is fields.Nested:
        nested = compiled_dumper(field.schema)
        if field.many:
            return lambda values: [nested(v) for v in values]
        return nested
    if type(field) is fields.List:
        inner = _value_dumper(field.inner)
        if inner is not None:
            return lambda values: [None if v is None else inner(v) for v in values]
    return None


def compiled_dumper(schema: Schema) -> Dumper:
    """A function equal to ``schema.dump`` for one object (``many`` schemas: for a list)."""
    steps = []
    for name, field in schema.dump_fields.items():
        key = field.data_key or name
        convert = _value_dumper(field)
        if convert is None:  # Function, Method and anything unusual: let marshmallow do it
            steps.append((key, None, field, name))
        else:
            steps.append((key, _getter(field.attribute or name), convert, None))

    def dump_one(obj):
        out = {}
        for key, get, convert, name in steps:
            if get is None:
                value = convert.serialize(name, obj)
                if value is not _MISSING and value is not fields.missing_:
                    out[key] = value
                continue
            value = get(obj)
            if value is _MISSING:
                continue
            out[key] = None if value is None else convert(value)
        return out

    if schema.many:
        return lambda objs: [dump_one(o) for o in objs]
    return dump_one


def dumps(value: Any) -> str:
    """JSON text for a database JSON column: orjson, falling back to json for what it refuses
    (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value)


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response encoded with orjson (non-string keys allowed, as json.dumps would coerce)."""
    body = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
    return Response(body, status=status, mimetype="application/json")
