"""The SpiffWorkflow conformance corpus (../shared/conformance): every file either
deploys and runs (completes, waits, or stops in a located incident, with user
tasks auto-completed with empty data) or is refused with a located 422 — never
a 500, never a hang."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "spiffworkflow"
PROCESS_ID = re.compile(rb"<(?:\w+:)?process\b[^>]*?\bid=\"([^\"]+)\"")
CALLED = re.compile(rb"calledElement=\"([^\"]+)\"")
MAX_ROUNDS = 25


def _corpus_files():
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*.bpmn"))


def _bundle_for(path: Path) -> dict[str, str]:
    """The file plus the DMN tables and the files defining the processes it calls (transitively)."""
    folder = path.parent
    defines = {}
    for other in folder.glob("*.bpmn"):
        for pid in PROCESS_ID.findall(other.read_bytes()):
            defines.setdefault(pid, other)
    bundle = {path.name: path}
    todo = [path]
    while todo:
        current = todo.pop()
        for called in CALLED.findall(current.read_bytes()):
            target = defines.get(called)
            if target is not None and target.name not in bundle:
                bundle[target.name] = target
                todo.append(target)
    if b"businessRuleTask" in b"".join(p.read_bytes() for p in bundle.values()):
        for dmn in folder.glob("*.dmn"):
            bundle[dmn.name] = dmn
    return {name: p.read_text(encoding="utf-8", errors="replace") for name, p in bundle.items()}


def _assert_located_rejection(body: dict, file_names):
    assert body["status"] == 422
    assert body["file"] in file_names, body
    assert body.get("element_id") or body.get("line"), body
    assert body["detail"], body


def _drive(client, headers, detail) -> str:
    """Auto-complete ready user tasks with empty data until the instance stops moving."""
    for _ in range(MAX_ROUNDS):
        status = detail["instance"]["status"]
        if status != "running" or not detail["tasks"]:
            break
        task = detail["tasks"][0]
        response = client.post(f"/api/v1/tasks/{task['id']}/complete",
                               json={"data": {}, "version": detail["instance"]["version"]}, headers=headers)
        assert response.status_code in (200, 422), response.get_json()
        if response.status_code == 422:  # a form the empty data does not satisfy: a clear refusal
            break
        detail = response.get_json()
    if detail["instance"]["status"] == "error":
        incident = detail["incidents"][-1]
        assert incident["element_id"] and incident["message"], incident
    return detail["instance"]["status"]


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"conformance corpus not found at {CORPUS} (it ships with CI)")
@pytest.mark.parametrize("path", _corpus_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_conformance_file_deploys_and_runs_or_is_refused_with_a_location(path, client, designer, app):
    app.config["HIDE_INTERNAL_ERRORS"] = False  # a 500 must fail the test loudly
    files = _bundle_for(path)
    response = client.post("/api/v1/processes", json={"files": files}, headers=designer)
    if response.status_code == 422:
        _assert_located_rejection(response.get_json(), files)
        return
    assert response.status_code == 201, response.get_json()
    own = set(pid.decode() for pid in PROCESS_ID.findall(path.read_bytes()))
    started = [r for r in response.get_json() if r["process_key"] in own]
    for deployed in started:
        reply = client.post(f"/api/v1/processes/{deployed['process_key']}/instances", json={"data": {}},
                            headers=designer)
        assert reply.status_code == 201, reply.get_json()
        assert _drive(client, designer, reply.get_json()) in ("completed", "running", "error")
