"""The restricted Python environment that BPMN scripts, conditions and timer
expressions run in, and the registry of service functions BPMN may call.

SpiffWorkflow evaluates scripts with plain ``exec``/``eval``. We make that
safe enough for designer-authored models by three layers:

1. AST checks (:func:`check_script`, at deploy and again before a text first
   runs): no ``import``, no names or attributes with a leading underscore (the
   usual sandbox escapes go through ``__class__``/``__subclasses__``), no
   ``global``/``nonlocal``, no names of the builtins left out below, no frame
   or code attributes (``gen.gi_frame.f_back.f_globals`` reaches the host's
   modules without one underscore) and no ``str.format`` (its fields walk
   attributes, ``"{0.__globals__}"``, where the AST cannot see them);
2. a whitelist of builtins: no ``open``, ``__import__``, ``eval``, ``exec``,
   ``compile``, ``getattr`` and friends; and helpers handed over as plain
   namespaces of functions, never as modules (``json.codecs.sys`` would be the
   whole interpreter);
3. a wall-clock limit enforced with a trace function on the script's own
   frames, so ``while True: pass`` becomes an incident, not a hung worker.
"""

from __future__ import annotations

import ast
import builtins
import datetime as _datetime
import json
import math
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import TaskDataEnvironment

SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "int",
    "isinstance", "len", "list", "map", "max", "min", "next", "range", "repr", "reversed", "round", "set",
    "sorted", "str", "sum", "tuple", "zip", "True", "False", "None", "ValueError", "KeyError", "TypeError",
    "Exception", "ZeroDivisionError", "IndexError",
)
SAFE_BUILTINS = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}


class UnsupportedElement(RuntimeError):
    """An instance reached an element Flowdesk deployed but cannot run (see ``engine.tolerance``)."""


def flowdesk_unsupported(message: str):
    """Stop the running task with an incident that says why the element cannot run."""
    raise UnsupportedElement(message)


def flowdesk_get(value, key):
    """``value.key`` / ``value[key]`` of translated expressions: null (None) when either is missing."""
    if isinstance(value, dict):
        return value.get(key)
    if isinstance(value, list | tuple | str) and isinstance(key, int) and -len(value) <= key < len(value):
        return value[key]
    return None


_COMPARE = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
            ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


def flowdesk_compare(left, op: str, right) -> bool:
    """A comparison of translated expressions: an ordering with null (None) or between values that do not
    compare (text and number) is false, as FEEL's null is at a gateway."""
    if op not in ("==", "!=") and (left is None or right is None):
        return False
    try:
        return bool(_COMPARE[op](left, right))
    except TypeError:
        return op == "!="


# Expressions translated from a modelling tool's dialect (``engine.expressions``): Python text → what the
# designer wrote. They read a name no process variable has as null, as FEEL does; messages quote the original.
TRANSLATED_EXPRESSIONS: dict[str, str] = {}


class _NullNames(dict):
    """Locals of a translated expression: names neither in the data nor among the helpers read as None."""

    def __init__(self, known: dict):
        super().__init__()
        self.known = known

    def __missing__(self, name):
        if name in self.known or name in SAFE_BUILTINS:
            raise KeyError(name)  # found next in the globals or the builtins
        return None


# Helpers every script may use; plain values and pure functions only. ``true``/``false``/``null`` serve
# conditions written the Java way that are also Python (``approved == true``).
SCRIPT_GLOBALS: dict[str, Any] = {
    "true": True, "false": False, "null": None,
    "flowdesk_unsupported": flowdesk_unsupported, "flowdesk_get": flowdesk_get, "flowdesk_compare": flowdesk_compare,
    "datetime": _datetime.datetime,
    "timedelta": _datetime.timedelta,
    "date": _datetime.date,
    "timezone": _datetime.timezone,
    # Namespaces, not the modules: a module's attributes include the modules it imported.
    "math": SimpleNamespace(**{name: getattr(math, name) for name in dir(math) if not name.startswith("_")}),
    "json": SimpleNamespace(dumps=json.dumps, loads=json.loads),
}

# Builtins a script has no business naming: refused outright rather than left to fail as "not defined".
FORBIDDEN_NAMES = frozenset({
    "open", "exec", "eval", "compile", "getattr", "setattr", "delattr", "hasattr", "globals", "locals", "vars",
    "dir", "breakpoint", "memoryview", "help", "exit", "quit", "classmethod", "staticmethod", "super",
})
# Attributes that lead from a value to the interpreter: frames and code of generators, coroutines and
# tracebacks, and the formatting methods whose replacement fields read attributes.
FORBIDDEN_ATTRIBUTE_PREFIXES = ("_", "gi_", "cr_", "ag_", "f_", "tb_", "co_")
FORBIDDEN_ATTRIBUTES = frozenset({"format", "format_map", "mro"})

SCRIPT_FILENAME = "<bpmn-script>"


_services: dict[str, Callable[..., Any]] = {}


class ScriptRejected(ValueError):
    """A script breaks the sandbox rules; ``line`` is 1-based inside the script."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class ScriptSyntaxError(ScriptRejected):
    """A script is not Python at all (as opposed to Python the sandbox refuses)."""


class ScriptTimeout(RuntimeError):
    """A script ran past its wall-clock limit."""


def register_service(name: str | None = None):
    """Decorator: expose a function to BPMN scripts, conditions and service tasks by name."""

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        _services[name or func.__name__] = func
        return func

    return wrap


def registered_services() -> dict[str, Callable[..., Any]]:
    """Return a copy of the name → function table of registered services."""
    return dict(_services)


def check_script(source: str, mode: str = "exec") -> None:
    """Raise :class:`ScriptRejected` if ``source`` does not compile or breaks a sandbox rule."""
    try:
        tree = ast.parse(source, mode=mode)
    except SyntaxError as err:
        raise ScriptSyntaxError(f"syntax error: {err.msg}", err.lineno) from None
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if isinstance(node, ast.Import | ast.ImportFrom):
            raise ScriptRejected("imports are not allowed in scripts", line)
        if isinstance(node, ast.Global | ast.Nonlocal):
            raise ScriptRejected("global/nonlocal are not allowed in scripts", line)
        if isinstance(node, ast.Attribute) and (node.attr.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES)
                                                or node.attr in FORBIDDEN_ATTRIBUTES):
            raise ScriptRejected(f"access to '{node.attr}' is not allowed in scripts", line)
        if isinstance(node, ast.Name) and (node.id.startswith("__") or node.id in FORBIDDEN_NAMES):
            raise ScriptRejected(f"the name '{node.id}' is not allowed in scripts", line)


class _Deadline:
    """Trace function that aborts script frames once a wall-clock deadline passes."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def __call__(self, frame, event, arg):
        # Only trace code compiled from BPMN; library code runs untraced (fast).
        if frame.f_code.co_filename != SCRIPT_FILENAME:
            return None
        return self._line

    def _line(self, frame, event, arg):
        if time.monotonic() > self.deadline:
            raise ScriptTimeout("script ran longer than its time limit")
        return self._line


class RestrictedEnvironment(TaskDataEnvironment):
    """Task-data environment with whitelisted builtins, AST checks and a time limit."""

    def __init__(self, time_limit: float = 2.0):
        super().__init__({"__builtins__": SAFE_BUILTINS, **SCRIPT_GLOBALS})
        self.time_limit = time_limit
        # Checked and compiled once per text: code objects are immutable, so sharing them is safe.
        self._compiled: dict[tuple[str, str], object] = {}

    def _compile(self, source: str, mode: str):
        key = (source, mode)
        code = self._compiled.get(key)
        if code is None:
            check_script(source, mode)
            if len(self._compiled) > 4096:  # bound the cache when models generate many texts
                self._compiled.clear()
            code = self._compiled[key] = compile(source, SCRIPT_FILENAME, mode)
        return code

    def _globals(self, context: dict, external_context: dict | None) -> dict:
        my_globals = dict(self.globals)
        my_globals.update(registered_services())
        my_globals.update(external_context or {})
        return my_globals

    def _run_traced(self, func):
        previous = sys.gettrace()
        sys.settrace(_Deadline(self.time_limit))
        try:
            return func()
        finally:
            sys.settrace(previous)

    def evaluate(self, expression, context, external_context=None):
        """Evaluate a condition or expression against task data."""
        text = expression.strip()
        code = self._compile(text, "eval")
        my_globals = self._globals(context, external_context)
        my_globals.update(context)
        if text in TRANSLATED_EXPRESSIONS:
            names = _NullNames(my_globals)
            return self._run_traced(lambda: eval(code, my_globals, names))  # noqa: S307 - sandboxed above
        return self._run_traced(lambda: eval(code, my_globals))  # noqa: S307 - sandboxed above

    def execute(self, script, context, external_context=None):
        """Run a script task's code; the task data is the script's namespace."""
        code = self._compile(script, "exec")
        self.check_for_overwrite(context, external_context or {})
        context.update(self._globals(context, external_context))
        try:
            self._run_traced(lambda: exec(code, context))  # noqa: S102 - sandboxed above
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
            for name in registered_services():
                context.pop(name, None)
        return True

    def call_service(self, context, operation_name=None, operation_params=None, **kwargs):
        """Call a registered service function for a BPMN service task; returns JSON text."""
        func = _services.get(operation_name)
        if func is None:
            raise ValueError(f"no service named '{operation_name}' is registered")
        params = {name: spec["value"] for name, spec in (operation_params or {}).items()}
        return json.dumps(func(**params), default=str)


class RestrictedScriptEngine(PythonScriptEngine):
    """Script engine whose service tasks go to our registry."""

    def __init__(self, time_limit: float = 2.0):
        super().__init__(environment=RestrictedEnvironment(time_limit))

    def call_service(self, task, **kwargs):
        """Run a registered service; errors become task errors (incidents)."""
        from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException

        try:
            return self.environment.call_service(task.data, **kwargs)
        except Exception as err:  # noqa: BLE001 - any service failure is an incident
            raise WorkflowTaskException(f"{err.__class__.__name__}: {err}", task=task, exception=err) from err
