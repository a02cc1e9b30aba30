"""Deploying BPMN/DMN bundles as immutable process versions, and reading versions back."""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import undefer

from ..auth.models import User
from ..engine import BpmnValidationError, parse_bundle
from ..errors import Conflict, NotFound
from ..extensions import db
from . import store
from .audit import record_audit
from .forms import form_path
from .models import ProcessVersion

BUNDLE_SUFFIXES = (".bpmn", ".dmn")


def validate_bundle(files: dict[str, bytes]):
    """Parse and check a bundle without deploying; returns the parsed bundle."""
    for name in files:
        if not name.endswith(BUNDLE_SUFFIXES) or "/" in name or "\\" in name or name.startswith("."):
            raise BpmnValidationError("only .bpmn and .dmn file names (without folders) are accepted", name)
    bundle, _ = parse_bundle(files, current_app.config["BPMN_MAX_FILE_BYTES"])
    for process in bundle.processes:
        for element_id, form_key in process.form_keys.items():
            if not form_path(form_key).is_file() or "/" in form_key:
                raise BpmnValidationError(f"the user task asks for form '{form_key}', which is not in forms/",
                                          process.file_name, element_id)
    return bundle


def deploy_bundle(files: dict[str, bytes], *, source: str = "api", actor: User | None = None,
                  client: str | None = None) -> list[dict]:
    """Deploy a bundle: each process whose content changed gets a new immutable version."""
    bundle = validate_bundle(files)
    results = []
    for process in bundle.processes:
        latest = latest_version(process.process_id)
        if latest is not None and latest.content_hash == process.content_hash:
            results.append({"process_key": process.process_id, "version": latest.version, "created": False,
                            "id": latest.id})
            continue
        pv = ProcessVersion(
            process_key=process.process_id, version=(latest.version + 1) if latest else 1, name=process.name,
            dialect=bundle.dialect, file_name=process.file_name, content_hash=process.content_hash,
            files=process.files, source=source, deployed_by_id=actor.id if actor else None,
        )
        db.session.add(pv)
        try:
            db.session.flush()
        except IntegrityError:
            raise Conflict(f"process '{process.process_id}' was deployed concurrently; try again") from None
        record_audit("deployed", actor=actor, client=client, element_id=process.process_id,
                     data={"version": pv.version, "file": process.file_name, "hash": process.content_hash})
        results.append({"process_key": pv.process_key, "version": pv.version, "created": True, "id": pv.id})
    store.forget_versions()
    return results


def read_bundle_dir(path: str | Path) -> dict[str, bytes]:
    """Read every .bpmn/.dmn file of a folder into a bundle."""
    folder = Path(path)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix in BUNDLE_SUFFIXES}


def deploy_directory(path: str | Path | None = None, *, actor: User | None = None) -> list[dict]:
    """Deploy the workflows folder (at startup and by CLI)."""
    files = read_bundle_dir(path or current_app.config["WORKFLOWS_DIR"])
    if not files:
        return []
    return deploy_bundle(files, source="folder", actor=actor)


def latest_version(process_key: str) -> ProcessVersion | None:
    """The newest version of a process, or None."""
    return db.session.scalars(select(ProcessVersion).where(ProcessVersion.process_key == process_key)
                              .order_by(ProcessVersion.version.desc()).limit(1)).first()


def get_version(process_key: str, version: int | None = None) -> ProcessVersion:
    """A given (or the latest) version of a process; NotFound if absent."""
    if version is None:
        pv = latest_version(process_key)
    else:
        pv = db.session.scalars(select(ProcessVersion).where(
            ProcessVersion.process_key == process_key, ProcessVersion.version == version)).first()
    if pv is None:
        raise NotFound(f"process '{process_key}'" + (f" version {version}" if version else "") + " is not deployed")
    return pv


def list_processes() -> list[dict]:
    """Every process with its latest version and how many versions exist."""
    rows = db.session.scalars(select(ProcessVersion).order_by(ProcessVersion.process_key,
                                                              ProcessVersion.version)).all()
    by_key: dict[str, dict] = {}
    for pv in rows:
        by_key[pv.process_key] = {"process_key": pv.process_key, "name": pv.name, "latest_version": pv.version,
                                  "versions": by_key.get(pv.process_key, {}).get("versions", 0) + 1,
                                  "deployed_at": pv.deployed_at}
    return list(by_key.values())


def list_versions(process_key: str) -> list[ProcessVersion]:
    """All versions of a process, newest first."""
    rows = db.session.scalars(select(ProcessVersion).where(ProcessVersion.process_key == process_key)
                              .order_by(ProcessVersion.version.desc())).all()
    if not rows:
        raise NotFound(f"process '{process_key}' is not deployed")
    return list(rows)


def version_xml(process_key: str, version: int | None = None) -> tuple[str, str]:
    """Return ``(file name, XML)`` of the file defining the process in that version."""
    pv = get_version(process_key, version)
    files = db.session.get(ProcessVersion, pv.id, options=[undefer(ProcessVersion.files)]).files
    return pv.file_name, files[pv.file_name]

