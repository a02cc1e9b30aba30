"""Loading demo data from ``seeds/`` through the services (never raw INSERTs)."""

from __future__ import annotations

import json
from pathlib import Path

from flask import current_app

from .auth.services import ensure_user


def _seed_file(name: str) -> list | dict:
    path = Path(current_app.config["SEEDS_DIR"]) / name
    return json.loads(path.read_text()) if path.exists() else []


def demo_logins() -> list[dict]:
    """The demo users (with their passwords) as listed in seeds/users.json."""
    return list(_seed_file("users.json"))


def load_seeds() -> dict:
    """Create the demo users if missing; returns counts."""
    created = 0
    for entry in demo_logins():
        before = entry["username"]
        user = ensure_user(before, entry["password"], entry["roles"], email=entry.get("email"),
                           full_name=entry.get("full_name", ""))
        created += 1 if user.created_at is None else 0
    from .aftersales.seeding import load_service_seeds
    from .sales.seeding import load_sales_seeds

    return {"users": len(demo_logins()), **load_service_seeds(_seed_file("service.json")),
            **load_sales_seeds(_seed_file("sales.json"))}
