"""``python -m bench`` (or ``python3 -m server bench``): run the benchmarks and print their ratios."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from server.config import web_threads, web_workers

from . import api_load, dispatch, engine_cycles, timers
from .harness import RESULTS


def main() -> None:
    """Parse options, run the benchmarks, save the rows as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--lanes", default="sqlite,postgresql", help="comma list: sqlite,postgresql")
    parser.add_argument("--clients", default="8", help="comma list of concurrent client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per figure")
    parser.add_argument("--web-workers", type=int, default=web_workers(),
                        help="gunicorn processes (default: WEB_CONCURRENCY or 2 × cores + 1, as in production)")
    parser.add_argument("--threads", type=int, default=1, help="gthread threads per worker (engine cycles)")
    parser.add_argument("--only", default="engine,api,timers,dispatch",
                        help="comma list of benchmarks: engine,api,timers,dispatch")
    parser.add_argument("--api-clients", default="8,32,64", help="concurrent clients for the API load benchmark")
    parser.add_argument("--api-threads", type=int, default=web_threads(),
                        help="gthread threads per worker for the API load (default: as the run command)")
    parser.add_argument("--profile", action="store_true",
                        help="api: afterwards sample the server with py-spy during task completion at 32 clients")
    parser.add_argument("--dispatch-sizes", default="1000,10000,100000", help="engineer counts")
    parser.add_argument("--dispatch-requests", type=int, default=1000, help="random requests per size")
    parser.add_argument("--dispatch-scan-seconds", type=float, default=60.0,
                        help="time budget per size for the exhaustive scan answering the same requests "
                             "(same-choice check; ~6000 covers all 1000 requests at 100k engineers)")
    parser.add_argument("--timers", type=int, default=10_000, help="pending timers coming due")
    parser.add_argument("--timer-spread", type=float, default=60.0, help="seconds over which they come due")
    parser.add_argument("--timer-workers", type=int, default=2, help="RQ worker processes")
    parser.add_argument("--timer-poll", type=float, default=0.5,
                        help="FLOWDESK_TIMER_POLL_SECONDS for the poller (the product default)")
    parser.add_argument("--results", default=str(RESULTS), help="folder for the JSON rows (and profiles)")
    args = parser.parse_args()
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    chosen = args.only.split(",")
    if "engine" in chosen:
        rows = engine_cycles.run(args.lanes.split(","), [int(c) for c in args.clients.split(",")], args.seconds,
                                 args.web_workers, args.threads)
        (results / "engine_cycles.json").write_text(json.dumps(rows, indent=2))
    if "api" in chosen:
        rows = api_load.run(args.lanes.split(","), [int(c) for c in args.api_clients.split(",")], args.seconds,
                            args.web_workers, args.api_threads, results if args.profile else None)
        (results / "api_load.json").write_text(json.dumps(rows, indent=2))
    if "timers" in chosen:
        rows = timers.run(args.lanes.split(","), args.timers, args.timer_spread, args.timer_workers, args.timer_poll)
        (results / "timers.json").write_text(json.dumps(rows, indent=2))
    if "dispatch" in chosen:
        rows = dispatch.run([int(n) for n in args.dispatch_sizes.split(",")], args.dispatch_requests,
                            args.dispatch_scan_seconds)
        (results / "dispatch.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
