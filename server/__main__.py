"""Bootstrap with nothing but Python 3.11: ``python3 -m server run`` or ``python3 -m server test``.

Creates ``.venv`` beside the project, installs the project (again only when
pyproject.toml changed), then hands over to the real command inside the venv.
Standard library only: nothing is installed when this runs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("FLOWDESK_VENV", ROOT / ".venv"))
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".flowdesk-installed"
CONSTRAINTS = ROOT / ".ci" / "constraints.txt"  # the exact versions tested: every install uses them
FRONTEND = ROOT / "server" / "frontend"
FRONTEND_STAMP = ROOT / "server" / "static" / "build" / ".flowdesk-built"
CHROMIUM = Path("/usr/bin/chromium")

USAGE = """usage: python3 -m server run [--port N]     set up and run the whole product
       python3 -m server test [pytest args] set up and run the test suite, with coverage (--no-cov: without)
       python3 -m server bench              run the benchmarks
       python3 -m server fault-injection    a multi-machine run with a killed worker and a Redis restart
       python3 -m server cli ...            any other command (see python -m server.cli --help)"""


def ensure_venv() -> None:
    """Create the venv and install the project with its dev extras (at the pinned versions) when needed."""
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + CONSTRAINTS.read_bytes()).hexdigest()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        print(f"creating virtualenv in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing Flowdesk and its dependencies (first run only)", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-c", str(CONSTRAINTS), "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(wanted)


def ensure_frontend() -> None:
    """Build the diagram bundle (bpmn-js from the npm registry) when its sources changed.

    Nothing third-party is committed: ``npm ci`` fetches the pinned packages and esbuild
    bundles them with our entry into ``server/static/build/``.
    """
    sources = [FRONTEND / "package.json", FRONTEND / "package-lock.json", *sorted((FRONTEND / "src").iterdir())]
    wanted = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    if FRONTEND_STAMP.exists() and FRONTEND_STAMP.read_text() == wanted:
        return
    if shutil.which("npm") is None:
        print("!! npm not found: the designer pages will show no BPMN diagram until `npm` is installed", flush=True)
        return
    print("building the BPMN diagram bundle with npm (first run only)", flush=True)
    npm = ["npm", "--prefix", str(FRONTEND), "--no-audit", "--no-fund", "--loglevel=error"]
    subprocess.run([*npm, "ci"], check=True)
    subprocess.run([*npm, "run", "build"], check=True)
    FRONTEND_STAMP.write_text(wanted)


def ensure_browser() -> None:
    """Install Debian's chromium for the browser tests when it is missing and we may (root + apt)."""
    if CHROMIUM.exists():
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing chromium for the browser tests (apt-get)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=False)
    if not CHROMIUM.exists():
        print("!! /usr/bin/chromium is missing: the browser tests will be SKIPPED (they fail in CI)", flush=True)


def main(argv: list[str]) -> int:
    """Dispatch run / test / bench / fault-injection / cli inside the venv."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    ensure_venv()
    if command in ("run", "test"):
        ensure_frontend()
    if command == "test":
        ensure_browser()
    os.chdir(ROOT)
    if command == "run":
        args = [str(PYTHON), "-m", "server.cli", "run", *rest]
    elif command == "test":
        # With coverage (pytest-cov; settings in pyproject.toml): the total, and the files with lines no test ran.
        args = [str(PYTHON), "-m", "pytest", "--cov", "--cov-report=term", *rest]
    elif command == "bench":
        args = [str(PYTHON), "-m", "bench", *rest]
    elif command == "fault-injection":
        args = [str(PYTHON), "-m", "bench.fault_injection", *rest]
    elif command == "cli":
        args = [str(PYTHON), "-m", "server.cli", *rest]
    else:
        print(USAGE, file=sys.stderr)
        return 2
    os.execv(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
