"""Where a server's CPU goes under load: py-spy samples every gunicorn worker while a load runs, and the
samples are summed by the package of their innermost Python frame (time inside C extensions such as
sqlite3, psycopg or orjson counts for the Python line that called them)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .harness import ROOT

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):\d+\)$")


def start_sampling(pid: int, seconds: float, output: Path, rate: int = 200) -> subprocess.Popen:
    """Start ``py-spy record`` (raw stacks) on ``pid`` and its subprocesses for ``seconds``."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise RuntimeError("py-spy is not installed (pip install -e .[dev])")
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)),
                             "--rate", str(rate), "--format", "raw", "--full-filenames", "--nonblocking",
                             "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def package_of(path: str) -> str:
    """A short name for the code a file belongs to: a site-packages distribution, ``flowdesk/<package>``
    for this project, ``stdlib:<module>`` for the standard library."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    root = f"{ROOT}/"
    if path.startswith(root):
        return "flowdesk/" + path[len(root):].split("/", 1)[0]
    return "stdlib:" + Path(path).stem if path.startswith("/") else path


def leaf_shares(raw: str) -> list[tuple[str, float]]:
    """Share of samples by the package of the innermost Python frame, largest first."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        match = _FRAME.match(stack.split(";")[-1])
        counts[package_of(match["file"]) if match else "other"] += int(count)
    total = sum(counts.values()) or 1
    return [(name, n / total) for name, n in counts.most_common()]


def inclusive_shares(raw: str, needles: dict[str, str]) -> dict[str, float]:
    """Share of samples whose stack passes through any frame containing each needle (a file or function)."""
    hits: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for name, needle in needles.items():
            if needle in stack:
                hits[name] += int(count)
    return {name: hits[name] / max(1, total) for name in needles}


def leaf_functions(raw: str) -> list[tuple[str, float]]:
    """Share of samples by innermost Python frame (function, file, line), largest first."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            counts[re.sub(r"\(\S*site-packages/", "(", stack.split(";")[-1].replace(f"{ROOT}/", ""))] += int(count)
    total = sum(counts.values()) or 1
    return [(name, n / total) for name, n in counts.most_common()]


def summary(raw: str, top: int = 12) -> str:
    """A printable table: leaf share by package, the busiest leaf frames, then the inclusive share of a
    few layers. Samples include threads blocked in C calls (a statement or commit waiting on the database,
    a socket write), since py-spy cannot tell those from running."""
    lines = [f"  {share:6.1%}  {name}" for name, share in leaf_shares(raw)[:top]]
    lines.append("  busiest innermost frames:")
    lines += [f"  {share:6.1%}  {name[:110]}" for name, share in leaf_functions(raw)[:6]]
    layers = inclusive_shares(raw, {
        "SpiffWorkflow (engine work)": "/SpiffWorkflow/", "SQLAlchemy (incl. the driver's calls)": "/sqlalchemy/",
        "marshmallow / webargs / flask-smorest (schemas)": "/marshmallow/", "token check": "current_principal (",
        "prometheus metrics": "/prometheus_client/"})
    lines.append("  inclusive (stack passes through):")
    lines += [f"  {share:6.1%}  {name}" for name, share in layers.items()]
    return "\n".join(lines)
