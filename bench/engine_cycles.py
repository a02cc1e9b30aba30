"""Engine cycles per second: the reference process (start → script → user task → end) driven through
the HTTP API of a production-style server (gunicorn on loopback, concurrent keep-alive clients) against
the same cycles run in-process on SpiffWorkflow alone (no DB, no HTTP), measured in the same run."""

from __future__ import annotations

import asyncio
import subprocess
import time

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState

from .harness import PASSWORD, ROOT, call, closed_loop, log_in, machine_line, running_server

REFERENCE = ROOT / "workflows" / "reference_cycle.bpmn"
TARGETS = {"sqlite": 0.5, "postgresql": 0.35}


def spiff_cycles_per_second(seconds: float) -> float:
    """The baseline: full cycles on SpiffWorkflow alone, with the serializations a server would do."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(REFERENCE))
    spec, subprocess_specs = parser.get_spec("reference_cycle"), parser.get_subprocess_specs("reference_cycle")
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))

    def cycle():
        workflow = BpmnWorkflow(spec, subprocess_specs)
        workflow.do_engine_steps()
        workflow = serializer.deserialize_json(serializer.serialize_json(workflow))
        task = workflow.get_tasks(state=TaskState.READY, manual=True)[0]
        task.set_data(approved=True)
        task.run()
        workflow.do_engine_steps()
        serializer.serialize_json(workflow)
        assert workflow.completed

    for _ in range(50):
        cycle()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        cycle()
        count += 1
    return count / (time.perf_counter() - started)


async def drive(port: int, clients: int, seconds: float, warmup: float = 2.0) -> dict:
    """Run ``clients`` keep-alive clients doing start → complete cycles; return throughput and latencies."""
    token = await log_in(port, "bench", PASSWORD)

    async def cycle(session, _index) -> bool:
        detail = await call(session, "POST", "/api/v1/processes/reference_cycle/instances", token, {"data": {}})
        done = await call(session, "POST", f"/api/v1/tasks/{detail['tasks'][0]['id']}/complete", token,
                          {"data": {"approved": True}, "version": detail["instance"]["version"]})
        assert done["instance"]["status"] == "completed"
        return True

    figures = await closed_loop(port, clients, seconds, cycle, warmup)
    return {"cycles_per_second": figures["per_second"], "p50_ms": figures["p50_ms"], "p99_ms": figures["p99_ms"],
            "cycles": figures["calls"]}


def run(lanes: list[str], clients: list[int], seconds: float, web_workers: int, threads: int) -> list[dict]:
    """Run every lane; print and return the rows."""
    rows = []
    print(machine_line())
    for lane in lanes:
        try:
            with running_server(lane, web_workers, threads) as (port, _pid):
                for count in clients:
                    baseline = spiff_cycles_per_second(min(seconds, 5.0))
                    figures = asyncio.run(drive(port, count, seconds))
                    ratio = figures["cycles_per_second"] / baseline
                    row = {"lane": lane, "clients": count, "web_workers": web_workers, "threads": threads,
                           "baseline_cycles_per_second": round(baseline, 1), **{
                               k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()},
                           "ratio": round(ratio, 3), "target": TARGETS[lane]}
                    rows.append(row)
                    verdict = "meets" if ratio >= TARGETS[lane] else "MISSES"
                    print(f"{lane:<10} clients={count:<3} in-process {baseline:7.1f}/s  http "
                          f"{figures['cycles_per_second']:7.1f}/s  p50 {figures['p50_ms']:.1f} ms  "
                          f"p99 {figures['p99_ms']:.1f} ms  ratio {ratio:.3f} ({verdict} target {TARGETS[lane]})",
                          flush=True)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as err:
            print(f"{lane}: skipped — {err}")
    return rows
