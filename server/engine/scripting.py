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
3. a wall-clock limit enforced by a watchdog thread (:class:`_Watchdog`), so
   ``while True: pass`` becomes an incident, not a hung worker. It installs no
   trace function: coverage and debuggers keep theirs, and no code is slowed.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import datetime as _datetime
import itertools
import json
import math
import os
import sys
import threading
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


class _TimeUp(BaseException):
    """What the watchdog raises inside a script's frame. A BaseException, so a script's ``except Exception``
    cannot swallow it (nor can a script name it); it leaves the script as :class:`ScriptTimeout`."""


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
        _check_time_limit_kept(node, line)


def _check_time_limit_kept(node: ast.AST, line: int | None) -> None:
    """Refuse what could swallow the time limit's exception: a bare ``except:``, ``break``/``continue``/
    ``return`` in a ``finally`` (they cancel the exception in flight), and definitions named with an
    underscore (``__exit__`` returning True, and every other hook into the interpreter)."""
    if isinstance(node, ast.ExceptHandler) and node.type is None:
        raise ScriptRejected("a bare 'except:' is not allowed in scripts; name the exceptions to catch", line)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name.startswith("_"):
        raise ScriptRejected(f"the name '{node.name}' is not allowed in scripts", line)
    if isinstance(node, ast.Try | ast.TryStar):
        for inner in (n for statement in node.finalbody for n in ast.walk(statement)):
            if isinstance(inner, ast.Break | ast.Continue | ast.Return):
                raise ScriptRejected("break, continue and return are not allowed in a 'finally' block",
                                     inner.lineno)


def _raise_in_thread(thread_id: int, exc: type[BaseException]) -> None:
    """Have ``exc`` raised in thread ``thread_id`` when it next checks for pending work (within a few
    bytecodes). Never used to cancel: clearing leaves the interpreter checking on every bytecode."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


def _checkpoint() -> None:
    """Nothing: a Python call, where the interpreter raises any exception pending for this thread."""


class _Watchdog:
    """One daemon thread per process that stops scripts running past their deadline.

    A trace function would do it too, but ``sys.settrace`` is a single slot: taking it blinds coverage and
    debuggers. Instead each run registers its deadline here; once one passes, the watchdog raises
    :class:`_TimeUp` in the script's thread (``PyThreadState_SetAsyncExc``), and only while that thread
    is in a script's own frame, so library code a script called (a registered service in the middle of a
    flush) is never cut in half: like the old trace function, the script stops at its next step. It shoots
    again while the run lasts, in case a ``finally`` block went on looping. Code that never returns to a
    script frame (one long C call) is not interrupted; the engine's run limit still bounds the whole run."""

    RETRY_SECONDS = 0.05

    def __init__(self):
        self._runs: dict[int, tuple[float, int]] = {}  # token -> (deadline, thread id)
        self._tokens = itertools.count()
        self._lock = threading.Lock()  # taken directly (C) on the hot path; the Condition only to wait
        self._wake = threading.Condition(self._lock)
        self._next_wake = float("inf")
        self._thread: threading.Thread | None = None

    def start(self, seconds: float) -> int:
        """Register a run of the calling thread that must end within ``seconds``; returns its token."""
        deadline = time.monotonic() + seconds
        with self._lock:
            token = next(self._tokens)
            self._runs[token] = (deadline, threading.get_ident())
            if self._thread is None:  # first use (a forked child starts afresh: see register_at_fork below)
                self._thread = threading.Thread(target=self._watch, name="script-watchdog", daemon=True)
                self._thread.start()
            if deadline < self._next_wake:  # usually later than what the watchdog waits for: no wake-up
                self._wake.notify()
        return token

    def finish(self, token: int) -> None:
        """End run ``token``; a shot that lands now, after the script is done, is dropped."""
        try:
            self._forget(token)
        except _TimeUp:  # it was fired just as the script ended: the script's own outcome stands
            self._forget(token)

    def _forget(self, token: int) -> None:
        with self._lock:
            self._runs.pop(token, None)
            # The watchdog fires only under this lock, at runs still listed: a shot fired before the pop
            # lands at this call, inside ``finish``, and none can follow it into the engine's code.
            _checkpoint()

    def _watch(self) -> None:
        with self._wake:
            while True:
                now = time.monotonic()
                overdue = [thread_id for deadline, thread_id in self._runs.values() if deadline <= now]
                if overdue:
                    frames = sys._current_frames()
                    for thread_id in overdue:
                        frame = frames.get(thread_id)
                        if frame is not None and frame.f_code.co_filename == SCRIPT_FILENAME:
                            _raise_in_thread(thread_id, _TimeUp)
                pending = [deadline for deadline, _ in self._runs.values() if deadline > now]
                self._next_wake = now + self.RETRY_SECONDS if overdue else min(pending, default=float("inf"))
                self._wake.wait(None if self._next_wake == float("inf") else self._next_wake - now)


_watchdog = _Watchdog()
# A forked child (a gunicorn or RQ work horse) has no watchdog thread and maybe a lock held by it: start afresh.
os.register_at_fork(after_in_child=_watchdog.__init__)


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

    def _run_limited(self, func):
        token = _watchdog.start(self.time_limit)
        try:
            return func()
        except _TimeUp:
            raise ScriptTimeout("script ran longer than its time limit") from None
        finally:
            _watchdog.finish(token)

    def evaluate(self, expression, context, external_context=None):
        """Evaluate a condition or expression against task data."""
        text = expression.strip()
        code = self._compile(text, "eval")
        my_globals = self._globals(context, external_context)
        my_globals.update(context)
        if text in TRANSLATED_EXPRESSIONS:
            names = _NullNames(my_globals)
            return self._run_limited(lambda: eval(code, my_globals, names))  # noqa: S307 - sandboxed above
        return self._run_limited(lambda: eval(code, my_globals))  # noqa: S307 - sandboxed above

    def execute(self, script, context, external_context=None):
        """Run a script task's code; the task data is the script's namespace."""
        code = self._compile(script, "exec")
        self.check_for_overwrite(context, external_context or {})
        context.update(self._globals(context, external_context))
        try:
            self._run_limited(lambda: exec(code, context))  # noqa: S102 - sandboxed above
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
