"""ISO 8601 timer values as BPMN writes them — durations (``P7D``, ``PT1H30M``, ``P1Y2M``), repeating
intervals (``R6/P1D``, ``R/PT1H``, ``R3/2026-12-24T09:00:00Z/P1D``) and date-times
(``2026-12-24T09:00:00Z``) — recognised and checked with the engine's own parsers, so a value that
deploys is one the timer can compute."""

from __future__ import annotations

import re
from datetime import datetime

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

TIMER_KINDS = ("timeDuration", "timeDate", "timeCycle")
_DURATION = re.compile(r"^P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
                       r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$")
_ISO_SHAPE = re.compile(r"^(R\d*/|P[\dT]|\d{4}-\d{2}-\d{2}|\d{4}-?W\d)[\w:.+\-/,]*$")
_EXAMPLES = {"timeDuration": "a duration such as PT1H30M or P7D",
             "timeDate": "a date-time such as 2026-12-24T09:00:00Z",
             "timeCycle": "a repeating interval such as R6/P1D, R/PT1H or R3/2026-12-24T09:00:00Z/P1D"}


def looks_like_iso(text: str) -> bool:
    """Whether a timer value is written as a bare ISO 8601 value (rather than an expression)."""
    return bool(_ISO_SHAPE.match(text.strip()))


def _is_duration(text: str) -> bool:
    return bool(_DURATION.match(text.upper()))


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text.upper() or len(text) == 10


def _is_cycle(text: str) -> bool:
    parts = text.upper().split("/")
    if len(parts) not in (2, 3) or not re.fullmatch(r"R\d*", parts[0]):
        return False
    rest = parts[1:]
    kinds = ["d" if _is_duration(p) else "t" if _is_datetime(p) else "?" for p in rest]
    if "?" in kinds or kinds.count("d") != 1:
        return False
    try:
        TimerEventDefinition.parse_iso_recurring_interval(text)
    except Exception:  # noqa: BLE001 - the engine's parser raises bare Exceptions
        return False
    return True


def check_timer_value(kind: str, value: str) -> str | None:
    """None if ``value`` is a valid ``kind`` (timeDuration / timeDate / timeCycle), else why not."""
    value = value.strip()
    valid = {"timeDuration": _is_duration, "timeDate": _is_datetime, "timeCycle": _is_cycle}[kind](value)
    if valid:
        return None
    return f"the timer value '{value}' is not {_EXAMPLES[kind]} (ISO 8601)"


def describe_timer_kind(kind: str) -> str:
    """Words for what a timer of this kind expects."""
    return _EXAMPLES.get(kind, "an ISO 8601 value")


def milliseconds_to_duration(ms: int) -> str:
    """A millisecond count (how Bonita writes timer durations) as an ISO 8601 duration."""
    seconds, rest = divmod(ms, 1000)
    return f"PT{seconds}.{rest:03d}S".replace(".000S", "S")
