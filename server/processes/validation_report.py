"""The validate report over a folder of exported models (``cli validate --report DIR``): each file is
validated as a deploy would validate it (with 'make executable' unless strict) together with the files
of its folder that it needs (the processes it calls, the DMN tables of its business-rule tasks), then
each process it defines is run on trial — user tasks completed with empty data, timers fired, messages
delivered — without touching the database. Counts say how many deploy and how many run to their end."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..engine import BpmnValidationError, Engine, VersionRef
from ..engine.trial import trial_run
from .deploy import validate_bundle

_PROCESS_ID = re.compile(rb"<(?:\w+:)?process\b[^>]*?\bid=\"([^\"]+)\"")
_CALLED = re.compile(rb"(?:calledElement|processId)=\"([^\"]+)\"")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\b\d+\b")


@dataclass
class FileReport:
    """One file: refused (with the error) or deployed (with its warnings and each process's trial run)."""

    path: Path
    error: dict | None = None
    warnings: int = 0
    runs: list[tuple[str, str, dict | None]] = field(default_factory=list)  # (process, outcome, incident)


@dataclass
class FolderReport:
    """Every file's report, with the counts the command prints."""

    files: list[FileReport] = field(default_factory=list)

    @property
    def deployed(self) -> list[FileReport]:
        """The files that would deploy."""
        return [f for f in self.files if f.error is None]

    def outcome_counts(self) -> Counter:
        """How the trial runs of the deployed files ended (a file counts as its worst run); an incident for a
        variable the empty trial data does not set counts as 'needs data'."""
        order = ["incident", "needs data", "stuck", "completed"]
        return Counter(next((o for o in order if any(r[1] == o for r in f.runs)), "completed")
                       for f in self.deployed)

    def refusal_reasons(self) -> Counter:
        """Refusals grouped by their message, with names and numbers blanked out."""
        return Counter(_QUOTED.sub("…", f.error["message"]) for f in self.files if f.error is not None)


def _bundle_for(path: Path) -> dict[str, bytes]:
    """The file plus the files of its folder that define the processes it calls (transitively), and the
    folder's DMN files when it has business-rule tasks."""
    defines: dict[bytes, Path] = {}
    for other in sorted(path.parent.glob("*.bpmn")):
        for pid in _PROCESS_ID.findall(other.read_bytes()):
            defines.setdefault(pid, other)
    bundle, todo = {path.name: path}, [path]
    while todo:
        for called in _CALLED.findall(todo.pop().read_bytes()):
            target = defines.get(called)
            if target is not None and target.name not in bundle:
                bundle[target.name] = target
                todo.append(target)
    if any(b"businessRuleTask" in p.read_bytes() for p in bundle.values()):
        bundle.update({p.name: p for p in sorted(path.parent.glob("*.dmn"))})
    return {name: p.read_bytes() for name, p in bundle.items()}


def report_folder(folder: str | Path, *, make_executable: bool = True, engine: Engine | None = None) -> FolderReport:
    """Validate and trial-run every ``.bpmn`` file under a folder (sorted, recursively)."""
    engine = engine or Engine(step_limit=5000, time_limit=20.0, script_time_limit=2.0)
    report = FolderReport()
    for number, path in enumerate(sorted(Path(folder).rglob("*.bpmn"))):
        entry = FileReport(path)
        report.files.append(entry)
        try:
            bundle = validate_bundle(_bundle_for(path), make_executable=make_executable)
        except BpmnValidationError as err:
            entry.error = err.to_dict()
            continue
        own = {p.decode() for p in _PROCESS_ID.findall(path.read_bytes())}
        mine = [p for p in bundle.processes if p.file_name == path.name or p.process_id in own]
        entry.warnings = len({(w["element_id"], w["message"]) for p in mine for w in p.warnings})
        for index, process in enumerate(mine):
            # Versions are never stored: a negative id keeps each trial's specs apart in the engine's cache.
            ref = VersionRef(-(number * 1000 + index + 1), process.process_id, bundle.dialect,
                             lambda process=process: process.files)
            outcome = trial_run(engine, ref)
            status = outcome.status
            if status == "incident" and "no process variable of that name" in outcome.incident["message"]:
                status = "needs data"
            entry.runs.append((process.process_id, status, outcome.incident))
    return report


def format_report(report: FolderReport, root: str | Path) -> list[str]:
    """The lines the command prints: one per file, then the counts and the refusal reasons."""
    lines = []
    for entry in report.files:
        name = entry.path.relative_to(root) if entry.path.is_relative_to(root) else entry.path
        if entry.error is not None:
            where = ", ".join(str(x) for x in (entry.error.get("element_id"), entry.error.get("line") and
                                              f"line {entry.error['line']}") if x)
            lines.append(f"refused   {name}: {entry.error['message']}" + (f" [{where}]" if where else ""))
            continue
        runs = "; ".join(_run_text(process, status, incident) for process, status, incident in entry.runs)
        lines.append(f"deployed  {name}" + (f" ({entry.warnings} warnings)" if entry.warnings else "") +
                     (f": {runs}" if runs else ""))
    total, deployed = len(report.files), len(report.deployed)
    outcomes = report.outcome_counts()
    lines.append("")
    lines.append(f"files: {total}   deployed: {deployed} ({_percent(deployed, total)})   refused: {total - deployed}")
    lines.append(f"of the deployed: ran to an end {outcomes['completed']} ({_percent(outcomes['completed'], deployed)})"
                 f"   stopped for want of input data {outcomes['needs data']}   stopped in an incident "
                 f"{outcomes['incident']}   still waiting {outcomes['stuck']}")
    reasons = report.refusal_reasons()
    if reasons:
        lines.append("refused because:")
        lines.extend(f"  {count:>3}  {reason}" for reason, count in reasons.most_common())
    return lines


def _run_text(process: str, status: str, incident: dict | None) -> str:
    if status == "completed":
        return f"{process} ran to its end"
    if status == "stuck":
        return f"{process} still waits after every task, timer and message was handled"
    if status == "needs data":
        return f"{process} needs input data at {incident['element_id']}: {incident['message']}"
    return f"{process} stopped in an incident at {incident['element_id']}: {incident['message']}"


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "–"
