"""Designer's sentences for what the parser and the engine report: no memory addresses, no Python
exception names, no XML namespaces in braces — the element is named by its id beside the message."""

from __future__ import annotations

import re

from .isodates import describe_timer_kind
from .scripting import TRANSLATED_EXPRESSIONS

BPMN_URI = "http://www.omg.org/spec/BPMN/20100524/MODEL"
_ELEMENT_REPR = re.compile(r"<Element \{[^}]*\}(\w+) at 0x[0-9a-fA-F]+>")
_BRACED = re.compile(r"\{([^}]*)\}(\w+)")
_EXPRESSION = re.compile(r"Error evaluating expression '(.*)'", re.DOTALL)

_PARSER_SENTENCES = [
    (re.compile(r"^Cannot resolve dataInputAssociation"),
     "a data input of this task points to something that is neither a data object nor a data store of the process"),
    (re.compile(r"^Cannot resolve dataOutputAssociation"),
     "a data output of this task points to something that is neither a data object nor a data store of the process"),
    (re.compile(r"^Multiple outgoing flows are not supported"),
     "this element has several outgoing flows, which Flowdesk cannot split here: put a gateway after it"),
    (re.compile(r"^Process (.+) is not executable\.?$"),
     "process '\\1' is marked not executable (isExecutable=\"false\"): choose 'make executable' to deploy it"),
    (re.compile(r"^The process '(.+)' was not found\..*$", re.DOTALL),
     "the process '\\1' is called but is not in the uploaded files: upload the file that defines it with this one"),
    (re.compile(r"^Non-default exclusive outgoing sequence flow without condition"),
     "this flow leaves an exclusive gateway without a condition and is not the default flow: give it a condition"),
    (re.compile(r"^Duplicate process ID: (.+)$"), "two processes have the id '\\1': each needs its own id"),
    (re.compile(r"^When looking for a task spec.*\((.+)\)\s*$", re.DOTALL),
     "this flow leads to '\\1', which is not an element of this process"),
    (re.compile(r"^Element '[^']*', attribute 'id': '([A-Za-z_][\w.\-]*)' is not a valid value of the atomic type "
                r"'xs:ID'\.?$"), "the id '\\1' is used by more than one element: each element needs its own id"),
    (re.compile(r"^\{[^}]+\}(\w+)$"), "the attribute '\\1' this element needs is missing"),
    (re.compile(r"Unsupported Catch Event", re.DOTALL),
     "this event waits for something Flowdesk does not support (it has no message, timer, signal or error)"),
    (re.compile(r"Unsupported Throw Event", re.DOTALL),
     "this event throws something Flowdesk does not support"),
]


def _prefix(uri: str) -> str:
    if uri == BPMN_URI:
        return "bpmn"
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


def plain_names(text: str) -> str:
    """``<Element {ns}x at 0x…>`` → ``'x'``, ``{BPMN uri}task`` → ``bpmn:task``."""
    text = _ELEMENT_REPR.sub(lambda m: f"'{m.group(1)}'", text)
    return _BRACED.sub(lambda m: f"{_prefix(m.group(1))}:{m.group(2)}", text)


def parse_error_sentence(message: str, from_schema: bool = False) -> str:
    """A parser or schema message as a designer reads it."""
    message = message.strip()
    for pattern, sentence in _PARSER_SENTENCES:
        if pattern.search(message):
            return pattern.sub(sentence, message) if "\\1" in sentence else sentence
    message = plain_names(message)
    if from_schema:
        message = re.sub(r"^Element '([^']+)'(, attribute '([^']+)')?: ", _schema_lead, message)
        return f"the file does not follow the BPMN 2.0 schema: {message}"
    return message


def _schema_lead(match: re.Match) -> str:
    element, attribute = match.group(1), match.group(3)
    return f"on <{element}> the attribute '{attribute}': " if attribute else f"<{element}>: "


def runtime_sentence(err: BaseException, cause: BaseException, element_id: str | None, timer_kind: str | None,
                     timer_expression: str | None) -> str:
    """What an engine failure means, in words (the element id and script line are shown beside it)."""
    expression = None
    found = _EXPRESSION.search(str(err.args[0]) if err.args else "")
    if found:
        expression = TRANSLATED_EXPRESSIONS.get(found.group(1), found.group(1))
    if timer_expression:
        timer_expression = TRANSLATED_EXPRESSIONS.get(timer_expression, timer_expression)
    if timer_kind and not isinstance(cause, NameError):
        written = f" {timer_expression!r}" if timer_expression else ""
        return (f"the timer of '{element_id}' could not be set: its value{written} is not "
                f"{describe_timer_kind(timer_kind)}")
    where = f"the expression '{expression}'" if expression else "the script"
    if isinstance(cause, NameError):
        name = getattr(cause, "name", None) or _quoted(str(cause))
        step = f"'{element_id}'" if element_id else "this step"
        what = f"'{name}' is not defined: no process variable of that name is set when {step} runs"
        if timer_kind:
            return f"the timer of '{element_id}' could not be set: {what}"
        return f"{where} failed: {what}"
    if isinstance(cause, KeyError):
        return f"{where} failed: the data has no key {cause}"
    if isinstance(cause, ZeroDivisionError):
        return f"{where} failed: division by zero"
    detail = str(cause.args[0]) if cause.args else ""
    if detail.startswith("No conditions satisfied"):
        return (f"no outgoing flow of '{element_id}' has a condition that holds, and it has no default flow: "
                "mark one flow as the default")
    if "NoneType" in detail:  # Python's words for null: say it the designer's way
        detail = f"a value it needs is not set (it is null) — {detail.replace('NoneType', 'null')}"
    if cause is err:
        return plain_names(detail or "the engine stopped")
    return f"{where} failed: {plain_names(detail) or 'it raised an error'}"


def _quoted(text: str) -> str:
    found = re.search(r"'([^']+)'", text)
    return found.group(1) if found else text
