"""Running process instances: start, complete a task, fire timers, deliver a
message, retry, cancel — each a bounded engine run returning a :class:`RunResult`.

The engine is stateless between calls: the caller hands in a version (whose
parsed specs are cached here) and the saved state, and gets back the new state
plus everything the database needs to mirror (human tasks, timers, message
waits, incident). Saved state never includes the process spec — that is stored
once per version.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from SpiffWorkflow.bpmn import BpmnEvent, BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SERIALIZER_VERSION
from SpiffWorkflow.bpmn.specs.event_definitions.message import MessageEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.camunda.serializer.config import CAMUNDA_CONFIG
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState

from .messages import runtime_sentence
from .parsing import form_key_of, specs_for
from .scripting import SCRIPT_FILENAME, RestrictedScriptEngine, ScriptTimeout, UnsupportedElement

TIMER_EVENT_TYPES = {"TimeDateEventDefinition", "DurationTimerEventDefinition", "CycleTimerEventDefinition"}


class RunLimitExceeded(RuntimeError):
    """An engine run took more steps or more time than allowed (a looping model)."""

    def __init__(self, message: str, task=None):
        super().__init__(message)
        self.task = task


class TaskNotReady(LookupError):
    """The task to complete is not a ready human task of this instance."""


class NoMessageWaiting(LookupError):
    """The instance is not waiting for the message delivered to it."""


@dataclass(frozen=True)
class VersionRef:
    """What the engine needs to know about a deployed process version."""

    id: int
    process_id: str
    dialect: str
    load_files: Callable[[], dict[str, str]]


@dataclass
class HumanTaskInfo:
    """A ready user/manual task, as the database mirrors it."""

    guid: str
    element_id: str
    name: str
    lane: str | None
    form_key: str | None
    candidate_role: str | None
    properties: dict[str, Any]
    due_at: datetime | None = None
    assignee_id: int | None = None


@dataclass
class TimerInfo:
    """A waiting timer event with its due moment."""

    guid: str
    element_id: str
    kind: str
    due_at: datetime


@dataclass
class MessageWaitInfo:
    """A catch event or receive task waiting for a named message."""

    guid: str
    element_id: str
    message_name: str


@dataclass
class IncidentInfo:
    """Why a run stopped in error, and where."""

    element_id: str | None
    message: str
    line: int | None = None
    task_guid: str | None = None


@dataclass
class RunResult:
    """Everything a caller persists after an engine run."""

    state: dict
    completed: bool
    data: dict
    human_tasks: list[HumanTaskInfo] = field(default_factory=list)
    timers: list[TimerInfo] = field(default_factory=list)
    messages: list[MessageWaitInfo] = field(default_factory=list)
    active_element_ids: list[str] = field(default_factory=list)
    thrown_messages: list[dict] = field(default_factory=list)
    fired_timer_guids: set[str] = field(default_factory=set)
    # Timers that started waiting and fired within this same run (already due when reached): they never
    # had a row, yet their path ran, so the caller records them as fired.
    instant_timers: list[TimerInfo] = field(default_factory=list)
    # What the state waited on before this run (False lets callers skip looking for stale mirror rows).
    human_guids_before: set[str] | None = None
    had_timers: bool = True
    had_messages: bool = True
    incident: IncidentInfo | None = None
    steps: int = 0


class _SpeclessWorkflowConverter(BpmnWorkflowConverter):
    """Workflow converter that leaves the spec out of saved state (it is stored once per version)."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict_with_specs(self, dct, spec, subprocess_specs):
        """Rebuild a workflow from saved state and already-parsed specs."""
        from uuid import UUID

        dct = dict(dct)
        workflow = self.target_class(spec, subprocess_specs, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dict(dct["subprocesses"]), workflow)
        workflow.bpmn_events = self.registry.restore(dct.get("bpmn_events", []))
        return workflow


def _converter_for(config: dict) -> _SpeclessWorkflowConverter:
    registry = BpmnWorkflowSerializer.configure(dict(config))
    # Constructing a converter registers it, replacing the default for BpmnWorkflow.
    return _SpeclessWorkflowConverter(BpmnWorkflow, registry)


_CONVERTERS = {"spiff": _converter_for(SPIFF_CONFIG), "camunda": _converter_for(CAMUNDA_CONFIG)}


class Engine:
    """Facade over SpiffWorkflow with bounded runs and a per-version spec cache."""

    def __init__(self, step_limit: int = 2000, time_limit: float = 10.0, script_time_limit: float = 2.0,
                 cache_size: int = 256):
        self.step_limit = step_limit
        self.time_limit = time_limit
        self.script_engine = RestrictedScriptEngine(script_time_limit)
        self._cache: OrderedDict[int, tuple] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.serializer_version = SERIALIZER_VERSION

    # -- specs -------------------------------------------------------------
    def _specs(self, version: VersionRef):
        with self._lock:
            hit = self._cache.get(version.id)
            if hit is not None:
                self._cache.move_to_end(version.id)
                return hit
        specs = specs_for(version.load_files(), version.dialect, version.process_id)
        with self._lock:
            self._cache[version.id] = specs
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return specs

    def _new_workflow(self, version: VersionRef) -> BpmnWorkflow:
        spec, subprocess_specs = self._specs(version)
        return BpmnWorkflow(spec, subprocess_specs, script_engine=self.script_engine)

    def _load(self, version: VersionRef, state: dict) -> BpmnWorkflow:
        spec, subprocess_specs = self._specs(version)
        workflow = _CONVERTERS[version.dialect].from_dict_with_specs(state, spec, subprocess_specs)
        workflow.script_engine = self.script_engine
        return workflow

    def dump(self, version: VersionRef, workflow: BpmnWorkflow) -> dict:
        """Serialize a workflow's state (without its spec) to a JSON-ready dict."""
        return _CONVERTERS[version.dialect].to_dict(workflow)

    # -- bounded run -------------------------------------------------------
    def _run(self, version: VersionRef, workflow: BpmnWorkflow, action: Callable[[], None] | None,
             acting_on=None) -> RunResult:
        started = time.monotonic()
        steps = 0
        current = {"task": acting_on}  # the task being run, to locate errors that do not say

        def guard(task):
            nonlocal steps
            current["task"] = task
            steps += 1
            if steps > self.step_limit:
                raise RunLimitExceeded(f"the run exceeded {self.step_limit} steps (does the model loop?)", task)
            if time.monotonic() - started > self.time_limit:
                raise RunLimitExceeded(f"the run exceeded {self.time_limit:g} seconds", task)

        before = _waits_of(workflow)
        timer_tasks = [t for t in workflow.event_manager.tasks.values() if _is_timer_task(t)]
        # Timer tasks that waited or had fired before this run: any other one that completes in it was
        # already due when it was reached.
        known_timers = {t.id for t in timer_tasks} | {t.id for t in _all_tasks(workflow)
                                                      if t.state == TaskState.COMPLETED and _is_timer_task(t)}
        incident = None
        try:
            if action is not None:
                action()
            workflow.do_engine_steps(will_complete_task=guard)
            # do_engine_steps ends by refreshing timers: one that came due right then (a boundary timer
            # in a subprocess) is READY but not run. Run on now, or it would run inside some later,
            # unrelated action while its timer row had been closed as cancelled.
            while _automatic_ready(workflow):
                steps_so_far = steps
                workflow.do_engine_steps(will_complete_task=guard)
                if steps == steps_so_far:
                    break
        except (TaskNotReady, NoMessageWaiting):
            raise
        except Exception as err:  # noqa: BLE001 - any engine/script failure becomes an incident
            incident = _incident_from(err, workflow, current["task"])
        result = self._result(version, workflow, incident, steps, known_timers)
        if result.incident is None and not result.completed and not _waits_on_something(workflow, result):
            result.incident = _stall_incident(workflow, steps)
        result.human_guids_before, result.had_timers, result.had_messages = before
        result.fired_timer_guids = {str(t.id) for t in timer_tasks if t.state == TaskState.COMPLETED}
        return result

    def _result(self, version, workflow, incident, steps, known_timers: set) -> RunResult:
        result = RunResult(
            state=self.dump(version, workflow),
            completed=workflow.completed,
            data=_json_safe(dict(workflow.data) if workflow.completed else _latest_data(workflow)),
            incident=incident,
            steps=steps,
        )
        active = TaskState.READY | TaskState.STARTED | TaskState.WAITING
        for task in _all_tasks(workflow):
            if not task.state & active:
                if task.state == TaskState.COMPLETED and task.id not in known_timers and _is_timer_task(task):
                    result.instant_timers.extend(_timer_infos(task))
                continue
            spec = task.task_spec
            result.active_element_ids.append(spec.bpmn_id or spec.name)
            if task.state == TaskState.READY and spec.manual:
                result.human_tasks.append(_human_task(task))
        for task in list(workflow.event_manager.tasks.values()):
            _collect_wait(task, result)
        if result.timers and result.human_tasks:
            _set_due_dates(workflow, result)
        for event in workflow.get_events():
            result.thrown_messages.append({"name": getattr(event.event_definition, "name", None),
                                           "payload": _json_safe(event.payload)})
        result.active_element_ids = sorted({e for e in result.active_element_ids if e})
        return result

    # -- operations ----------------------------------------------------------
    def start(self, version: VersionRef, data: dict | None = None) -> RunResult:
        """Create an instance with input data and run it to its first wait."""
        workflow = self._new_workflow(version)
        if data:
            workflow.task_tree.set_data(**data)
            for child in workflow.task_tree.children:
                child.set_data(**data)
        return self._run(version, workflow, None)

    def complete_task(self, version: VersionRef, state: dict, task_guid: str, data: dict) -> RunResult:
        """Submit data to a ready human task and run the engine on."""
        workflow = self._load(version, state)
        task = _find_task(workflow, task_guid)
        if task is None or task.state != TaskState.READY or not task.task_spec.manual:
            raise TaskNotReady(task_guid)

        def action():
            if hasattr(task.task_spec, "add_data_from_form"):
                task.task_spec.add_data_from_form(task, data)
            else:
                task.set_data(**data)
            task.run()

        return self._run(version, workflow, action, acting_on=task)

    def fire_timers(self, version: VersionRef, state: dict) -> RunResult:
        """Let every timer whose due time has passed fire, then run the engine on."""
        workflow = self._load(version, state)
        return self._run(version, workflow, workflow.refresh_timers)

    def fire_timers_now(self, version: VersionRef, state: dict) -> RunResult:
        """Fire every waiting timer as if its moment had come (trial runs of a model, e.g. the validate
        report; instances fire theirs through timer rows and the clock)."""
        workflow = self._load(version, state)
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        for task in workflow.event_manager.tasks.values():
            value = task._get_internal_data("event_value")
            if isinstance(value, dict):
                value["next"] = past
            elif isinstance(value, str) and _is_timer_task(task):
                task._set_internal_data(event_value=past)
        return self._run(version, workflow, workflow.refresh_timers)

    def deliver_message(self, version: VersionRef, state: dict, name: str, payload: Any) -> RunResult:
        """Deliver a named message (with a payload) to whatever in the instance waits for it."""
        workflow = self._load(version, state)
        waiting = [t for t in workflow.event_manager.tasks.values() if _message_definition(t, name) is not None]
        if not waiting:
            raise NoMessageWaiting(name)
        definition = _message_definition(waiting[0], name)
        if isinstance(payload, dict) and not getattr(definition, "message_var", None):
            # No message variable in the model: the payload's fields become process data.
            for task in waiting:
                task.set_data(**payload)
        # Spiff matches event definitions by class, so reuse the waiting task's own definition.
        event = BpmnEvent(definition, payload)
        return self._run(version, workflow, lambda: workflow.send_event(event))

    def retry(self, version: VersionRef, state: dict, data: dict | None = None) -> RunResult:
        """Re-run tasks that failed (after a data fix or redeploy) and continue."""
        workflow = self._load(version, state)

        def action():
            for task in workflow.get_tasks(state=TaskState.ERROR):
                task.reset_branch(None)  # back to READY with its parent's data...
                task.set_data(**(data or {}))  # ...plus the fix

        return self._run(version, workflow, action)

    def element_states(self, version: VersionRef, state: dict) -> dict[str, list[str]]:
        """Which BPMN elements of an instance have completed and which are active (to paint its diagram)."""
        workflow = self._load(version, state)
        completed, active = set(), set()
        waiting = TaskState.READY | TaskState.STARTED | TaskState.WAITING
        for task in _all_tasks(workflow):
            element = task.task_spec.bpmn_id
            if not element:
                continue
            if task.state == TaskState.COMPLETED:
                completed.add(element)
            elif task.state & waiting:
                active.add(element)
        return {"completed": sorted(completed - active), "active": sorted(active)}

    def missing_elements(self, version: VersionRef, state: dict) -> list[str]:
        """Task specs a saved state uses that ``version`` lacks (empty: the state can move to it)."""
        spec, subprocess_specs = self._specs(version)
        missing = {t["task_spec"] for t in state["tasks"].values()} - set(spec.task_specs)
        for sub in state.get("subprocesses", {}).values():
            sub_spec = subprocess_specs.get(sub.get("spec"))
            names = set(sub_spec.task_specs) if sub_spec is not None else set()
            missing |= {t["task_spec"] for t in sub["tasks"].values()} - names
        return sorted(missing)

    def cancel(self, version: VersionRef, state: dict) -> dict:
        """Cancel every task of an instance (terminate); return the new state."""
        workflow = self._load(version, state)
        workflow.cancel()
        return self.dump(version, workflow)


# -- helpers -------------------------------------------------------------------
def _find_task(workflow: BpmnWorkflow, guid: str):
    from uuid import UUID

    try:
        return workflow.get_task_from_id(UUID(guid))
    except (ValueError, KeyError, Exception):  # noqa: BLE001 - unknown id
        return None


def _properties(spec) -> dict[str, Any]:
    ext = getattr(spec, "extensions", None) or {}
    props = dict(ext.get("properties", {}) or {})
    return props


def _assignee(task, props: dict[str, Any]) -> int | None:
    """The user id named by the task property ``assigneeVariable`` (a task-data variable), if any."""
    value = task.data.get(props["assigneeVariable"]) if props.get("assigneeVariable") else None
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _human_task(task) -> HumanTaskInfo:
    spec = task.task_spec
    props = _properties(spec)
    return HumanTaskInfo(
        assignee_id=_assignee(task, props),
        guid=str(task.id),
        element_id=spec.bpmn_id,
        name=spec.bpmn_name or spec.bpmn_id,
        lane=spec.lane,
        form_key=form_key_of(spec),
        # candidateRoleVariable: the role is decided by the process (e.g. the approval level reached).
        candidate_role=(task.data.get(props["candidateRoleVariable"]) if props.get("candidateRoleVariable")
                        else None) or props.get("candidateRole"),
        properties=props,
    )


def _set_due_dates(workflow: BpmnWorkflow, result: RunResult) -> None:
    """A human task is due when the earliest timer attached to it (a boundary event) is."""
    due_by_guid = {t.guid: t.due_at for t in result.timers}
    for info in result.human_tasks:
        task = workflow.get_task_from_id(UUID(info.guid))
        siblings = task.parent.children if task.parent is not None else []
        dues = [due_by_guid[str(s.id)] for s in siblings if str(s.id) in due_by_guid]
        info.due_at = min(dues) if dues else None


def _all_tasks(workflow: BpmnWorkflow):
    """Every task of a workflow and its subprocesses (a flat scan: cheaper than walking the tree)."""
    yield from workflow.tasks.values()
    for subprocess in workflow.subprocesses.values():
        yield from subprocess.tasks.values()


def _automatic_ready(workflow: BpmnWorkflow) -> bool:
    """Whether some task the engine runs by itself (not a human task) is ready."""
    return any(t.state == TaskState.READY and not t.task_spec.manual for t in _all_tasks(workflow))


def _waits_of(workflow: BpmnWorkflow) -> tuple[set[str], bool, bool]:
    """A workflow's ready human tasks, and whether it waits for timers and for messages."""
    humans = {str(t.id) for t in _all_tasks(workflow) if t.state == TaskState.READY and t.task_spec.manual}
    waits = [d for t in workflow.event_manager.tasks.values() for d in _definitions(t)]
    timers = any(_is_timer(d) or not isinstance(d, MessageEventDefinition) for d in waits)
    messages = any(isinstance(d, MessageEventDefinition) for d in waits)
    return humans, timers, messages


def _definitions(task) -> list:
    """The event definitions a waiting task listens for (an event-based gateway has several)."""
    definition = getattr(task.task_spec, "event_definition", None)
    return list(getattr(definition, "event_definitions", None) or [definition])


def _message_definition(task, name: str):
    """The definition of the message ``name`` the task waits for, if it does."""
    return next((d for d in _definitions(task) if isinstance(d, MessageEventDefinition) and d.name == name), None)


def _is_timer(definition) -> bool:
    return type(definition).__name__ in TIMER_EVENT_TYPES


def _parse_due(value) -> datetime | None:
    if isinstance(value, dict):
        value = value.get("next")
    if not isinstance(value, str):
        return None
    try:
        due = TimerEventDefinition.get_datetime(value)
    except ValueError:
        return None
    return due.astimezone(UTC)


def _is_timer_task(task) -> bool:
    """Whether a task is a timer event (or an event-based wait with a timer among its events)."""
    return any(map(_is_timer, _definitions(task)))


def _timer_infos(task) -> list[TimerInfo]:
    """The timers a (waiting or just fired) task's event definitions carry, with their due moments."""
    element_id = task.task_spec.bpmn_id or task.task_spec.name
    infos = []
    for definition in _definitions(task):
        if _is_timer(definition):
            details = definition.details(task)
            due = _parse_due(details.value)
            if due is not None:
                infos.append(TimerInfo(str(task.id), element_id, details.event_type, due))
    return infos


def _collect_wait(task, result: RunResult) -> None:
    result.timers.extend(_timer_infos(task))
    element_id = task.task_spec.bpmn_id or task.task_spec.name
    for definition in _definitions(task):
        if isinstance(definition, MessageEventDefinition):
            result.messages.append(MessageWaitInfo(str(task.id), element_id, definition.name))


def _latest_data(workflow: BpmnWorkflow) -> dict:
    # The most recently completed task carries the freshest view of process data.
    last = workflow.last_task
    data = dict(workflow.data)
    if last is not None:
        data.update(last.data)
    return data


def _json_safe(value):
    """``value`` as JSON would give it back (odd types as their text)."""
    try:
        return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
    except (orjson.JSONEncodeError, TypeError):
        return json.loads(json.dumps(value, default=str))


def _script_line(err: BaseException) -> int | None:
    """The line inside the BPMN script where an exception was raised, if it was."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == SCRIPT_FILENAME]
    return frames[-1].lineno if frames else None


def _waits_on_something(workflow: BpmnWorkflow, result: RunResult) -> bool:
    """Whether a run that did not complete left the instance waiting for a person, a timer, a message or
    another event (a call activity's child waits through its own tasks, which these include)."""
    if result.human_tasks or result.timers or result.messages or result.instant_timers:
        return True
    return any(t.state == TaskState.WAITING for t in workflow.event_manager.tasks.values())


def _stall_incident(workflow: BpmnWorkflow, steps: int) -> IncidentInfo:
    """An incident for a run that stopped with nothing to wait for: on the element it stopped at."""
    tasks = [t for t in _all_tasks(workflow) if t.task_spec.bpmn_id]  # elements of the model, not Spiff's own
    ready = [t for t in tasks if t.state == TaskState.READY and not t.task_spec.manual]
    stuck = ready or [t for t in tasks if t.state & (TaskState.WAITING | TaskState.STARTED)]
    task = max(stuck, key=lambda t: t.depth) if stuck else workflow.last_task
    element_id = (task.task_spec.bpmn_id or task.task_spec.name) if task is not None else None
    if ready:
        # SpiffWorkflow walks a path at most 1,000 tasks deep; a loop with no wait reaches that and stops.
        message = (f"the process went round and round without waiting for anything and stopped at "
                   f"'{element_id}' after {steps} steps in this run: does a loop have no way out? (one path may "
                   "pass at most 1,000 elements without waiting for a person, a timer or a message)")
    else:
        message = (f"the process stopped at '{element_id}' with nothing left to wait for (no task, timer or "
                   "message): does a flow lead nowhere, or a gateway wait for a path that never comes?")
    return IncidentInfo(element_id=element_id, message=message,
                        task_guid=str(task.id) if task is not None else None)


def _timer_of(task) -> tuple[str | None, str | None]:
    """The kind (timeDuration / timeDate / timeCycle) and expression of a timer task, if it is one."""
    definition = getattr(task.task_spec, "event_definition", None) if task is not None else None
    kind = {"DurationTimerEventDefinition": "timeDuration", "TimeDateEventDefinition": "timeDate",
            "CycleTimerEventDefinition": "timeCycle"}.get(type(definition).__name__)
    return kind, getattr(definition, "expression", None) if kind else None


def _timer_task_in(err: BaseException):
    """The timer task whose due moment was being computed when ``err`` was raised, if it was (the engine
    raises bare exceptions there, without a task)."""
    for exc in (err, err.__cause__, err.__context__):
        tb = exc.__traceback__ if exc is not None else None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename.endswith(("event_definitions/timer.py", "event_definitions\\timer.py")):
                task = tb.tb_frame.f_locals.get("my_task")
                if task is not None:
                    return task
            tb = tb.tb_next
    return None


def _incident_from(err: Exception, workflow: BpmnWorkflow, running=None) -> IncidentInfo:
    task = getattr(err, "task", None) or _timer_task_in(err)
    if task is None:
        failed = [t for t in _all_tasks(workflow) if t.state == TaskState.ERROR] or ([running] if running else [])
        task = failed[0] if failed else None
    element_id = (task.task_spec.bpmn_id or task.task_spec.name) if task is not None else None
    guid = str(task.id) if task is not None else None
    cause = err.__cause__ or err.__context__ or err
    if isinstance(getattr(err, "exception", None), BaseException):
        cause = err.exception
    line = getattr(err, "line_number", None) or _script_line(cause) or None
    if isinstance(cause, ScriptTimeout) or isinstance(err, RunLimitExceeded):
        message = str(cause)
    elif isinstance(cause, UnsupportedElement):
        message, line = str(cause), None
    else:
        kind, expression = _timer_of(task)
        message = runtime_sentence(err, cause, element_id, kind, expression)
    return IncidentInfo(element_id=element_id, message=message[:2000], line=line, task_guid=guid)
