"""JSON-schema task forms as HTML: which inputs to draw, and how posted strings become the typed
data the schema (and the engine) expect. The schema stays the one description of a form."""

from __future__ import annotations

from typing import Any

from ..security.json_depth import check_json_field

TEXTAREA_FROM = 200  # strings allowed longer than this get a multi-line box


def _types(prop: dict) -> list[str]:
    kind = prop.get("type", "string")
    return kind if isinstance(kind, list) else [kind]


def _options(prop: dict) -> list | None:
    if "enum" in prop:
        return list(prop["enum"])
    if "oneOf" in prop and all("const" in choice for choice in prop["oneOf"]):
        return [choice["const"] for choice in prop["oneOf"]]
    return None


def fields_of(schema: dict) -> list[dict]:
    """The inputs of a form: name, label, widget (text/textarea/number/checkbox/select), required, hints."""
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        kinds = [k for k in _types(prop) if k != "null"] or ["string"]
        options = _options(prop)
        if options is not None:
            widget = "select"
        elif kinds[0] == "boolean":
            widget = "yesno"
        elif kinds[0] in ("integer", "number"):
            widget = "number"
        elif kinds[0] == "string" and prop.get("maxLength", 10_000) > TEXTAREA_FROM:
            widget = "textarea"
        elif kinds[0] in ("array", "object"):
            widget = "json"
        else:
            widget = "text"
        fields.append({"name": name, "label": prop.get("title") or name.replace("_", " ").capitalize(),
                       "help": prop.get("description"), "widget": widget, "options": options or [],
                       "required": name in required, "step": "1" if kinds[0] == "integer" else "any",
                       "min": prop.get("minimum"), "max": prop.get("maximum")})
    return fields


def _coerce(raw: str, prop: dict, field: str) -> Any:
    kinds = _types(prop)
    text = raw.strip()
    if text == "":
        return None if "null" in kinds else ...
    import json

    for kind in kinds:
        try:
            if kind == "boolean":
                if text in ("true", "false"):
                    return text == "true"
            elif kind == "integer":
                return int(text)
            elif kind == "number":
                value = float(text)
                return int(value) if value.is_integer() and "." not in text else value
            elif kind in ("array", "object"):
                check_json_field(text, field)
                return json.loads(text)
            elif kind == "string":
                return raw
        except ValueError:
            continue
    return raw  # let the schema say what is wrong with it, in the API's words


def data_from_form(schema: dict, form) -> dict:
    """The posted form as typed data: empty optional inputs are left out, the rest converted by type."""
    data = {}
    for name, prop in schema.get("properties", {}).items():
        if name not in form:
            continue
        value = _coerce(form.get(name, ""), prop, name)
        if value is not ...:
            data[name] = value
    return data
