"""Trial runs of a model without a database: start it, complete each user task with empty (or given)
data, fire each timer as if its moment had come, deliver each awaited message, until it ends, stops in
an incident or stops moving. The validate report uses this to say whether a file runs to its end."""

from __future__ import annotations

from dataclasses import dataclass, field

from .runtime import Engine, RunResult, VersionRef


@dataclass
class TrialOutcome:
    """How a trial run ended: 'completed', 'incident' (with it) or 'stuck' (still waiting after the rounds)."""

    status: str
    incident: dict | None = None
    rounds: int = 0
    visited: list[str] = field(default_factory=list)


def trial_run(engine: Engine, version: VersionRef, data: dict | None = None, task_data: dict | None = None,
              max_rounds: int = 100) -> TrialOutcome:
    """Drive one process version to its end; ``task_data`` maps a user task's element id to what it submits."""
    result = engine.start(version, data or {})
    visited: list[str] = []
    for rounds in range(max_rounds):
        visited.extend(result.active_element_ids)
        if result.incident is not None or result.completed:
            break
        result = _advance(engine, version, result, task_data or {})
        if result is None:
            return TrialOutcome("stuck", rounds=rounds, visited=visited)
    else:
        return TrialOutcome("stuck", rounds=max_rounds, visited=visited)
    if result.incident is not None:
        info = result.incident
        return TrialOutcome("incident", {"element_id": info.element_id, "message": info.message, "line": info.line},
                            rounds, visited)
    return TrialOutcome("completed", rounds=rounds, visited=visited)


def _advance(engine: Engine, version: VersionRef, result: RunResult, task_data: dict) -> RunResult | None:
    """One step of the trial: a user task first, else the timers, else a message; None when nothing waits."""
    if result.human_tasks:
        task = result.human_tasks[0]
        return engine.complete_task(version, result.state, task.guid, dict(task_data.get(task.element_id) or {}))
    if result.timers:
        return engine.fire_timers_now(version, result.state)
    if result.messages:
        return engine.deliver_message(version, result.state, result.messages[0].message_name, {})
    return None
