"""JSON form schemas of user tasks (``forms/<form_key>.schema.json``): loading and validating
submitted data against them."""

from __future__ import annotations

import json
from pathlib import Path

from flask import current_app
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..errors import ValidationFailed

_form_cache: dict[Path, tuple[float, Draft202012Validator]] = {}


def form_path(form_key: str) -> Path:
    """Where the JSON schema for a form key lives."""
    return Path(current_app.config["FORMS_DIR"]) / f"{form_key}.schema.json"


def form_keys() -> list[str]:
    """The form keys there is a schema for, sorted (what a designer may name as a task's formKey)."""
    suffix = ".schema.json"
    return sorted(path.name.removesuffix(suffix) for path in Path(current_app.config["FORMS_DIR"]).glob(f"*{suffix}"))


def form_validator(form_key: str) -> Draft202012Validator:
    """Load (and cache by mtime) the validator for a form key."""
    path = form_path(form_key)
    if "/" in form_key or "\\" in form_key or not path.is_file():
        raise ValidationFailed(f"the form '{form_key}' does not exist in forms/",
                               errors=[{"field": None, "message": f"missing forms/{form_key}.schema.json"}])
    mtime = path.stat().st_mtime
    cached = _form_cache.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
    except (ValueError, SchemaError) as err:
        raise ValidationFailed(f"the form schema forms/{form_key}.schema.json is invalid: {err}") from None
    validator = Draft202012Validator(schema)
    _form_cache[path] = (mtime, validator)
    return validator


def validate_form_data(form_key: str | None, data: dict) -> None:
    """Raise ValidationFailed listing every field that breaks the task's form schema."""
    if not form_key:
        return
    errors = []
    for error in sorted(form_validator(form_key).iter_errors(data), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            missing = [name for name in error.validator_value if name not in error.instance]
            for name in missing:
                errors.append({"field": f"{path}.{name}" if path else name, "message": "is required"})
            continue
        errors.append({"field": path or None, "message": error.message})
    if errors:
        raise ValidationFailed(f"the submitted data does not match the form '{form_key}'", errors=errors)

