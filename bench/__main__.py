"""``python -m bench`` (or ``python3 -m server bench``): run the benchmarks and print their ratios."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from server.config import web_workers

from . import engine_cycles

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    """Parse options, run the benchmarks, save the rows as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--lanes", default="sqlite,postgresql", help="comma list: sqlite,postgresql")
    parser.add_argument("--clients", default="8", help="comma list of concurrent client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per figure")
    parser.add_argument("--web-workers", type=int, default=web_workers(),
                        help="gunicorn processes (default: WEB_CONCURRENCY or 2 × cores + 1, as in production)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = engine_cycles.run(args.lanes.split(","), [int(c) for c in args.clients.split(",")], args.seconds,
                             args.web_workers, args.threads)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine_cycles.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
