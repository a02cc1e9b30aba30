"""Demo after-sales data from seeds/service.json: engineers spread over a city,
customer accounts with assets (and their QR links), parts, a stocked warehouse
and vans. Deterministic (a fixed random seed) and loaded once."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import select

from ..auth.services import ensure_user
from ..extensions import db
from . import service_requests
from .engineers import create_engineer
from .models import Account, Asset, Part, StockLevel


def _around(rng: random.Random, lat: float, lon: float, radius_km: float) -> tuple[float, float]:
    distance, bearing = radius_km * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    return (round(lat + distance * math.cos(bearing) / 110.574, 6),
            round(lon + distance * math.sin(bearing) / (111.320 * math.cos(math.radians(lat))), 6))


def load_service_seeds(spec: dict) -> dict:
    """Create the demo after-sales data unless accounts exist already; returns counts."""
    if not spec or db.session.scalar(select(Account.id).limit(1)) is not None:
        return {}
    rng = random.Random(spec["random_seed"])
    city = spec["city"]
    today = date.today()
    parts = []
    for p in spec["parts"]:
        part = Part(sku=p["sku"], name=p["name"], product_line=p["product_line"],
                    unit_price=Decimal(str(p["unit_price"])))
        db.session.add(part)
        parts.append(part)
    db.session.flush()
    for part in parts:
        db.session.add(StockLevel(part_id=part.id, location="warehouse", quantity=spec["warehouse_quantity"],
                                  reserved=0))
    assets = []
    for index, a in enumerate(spec["accounts"]):
        account = service_requests.create_account(a["name"], a["tier"])
        db.session.flush()
        for n in range(spec["assets_per_account"]):
            line = a["product_lines"][n % len(a["product_lines"])]
            lat, lon = _around(rng, city["lat"], city["lon"], city["radius_km"])
            installed = today - timedelta(days=rng.randint(60, 2500))
            assets.append(service_requests.create_asset(
                account, f"SN-{index + 1:02d}{n + 1:02d}-{rng.randint(1000, 9999)}", rng.choice(spec["models"][line]),
                line, f"{a['name']}, {city['name']}", lat, lon, install_date=installed,
                warranty_end=installed + timedelta(days=730),
                contract_end=today + timedelta(days=365) if a["tier"] == "vip" else None))
    db.session.flush()
    eng = spec["engineers"]
    demo = spec["demo_engineer"]
    engineers = []
    demo_asset = assets[0]
    demo_user = ensure_user(demo["username"], "unused-demo-password", ["engineer"], full_name=demo["name"])
    # The demo engineer waits a few hundred metres from the first asset, so the printed QR link reaches them.
    engineers.append(create_engineer(demo["name"], demo["skills"], demo_asset.lat + 0.003,
                                     demo_asset.lon + 0.003, user_id=demo_user.id,
                                     shift_start=demo["shift"][0], shift_end=demo["shift"][1]))
    for n in range(eng["count"]):
        username = f"{eng['username_prefix']}{n + 1:02d}"
        user = ensure_user(username, eng["password"], ["engineer"], full_name=f"Engineer {n + 1:02d}")
        skills = rng.sample(eng["skills"], rng.choice([1, 2, 2, 3]))
        lat, lon = _around(rng, city["lat"], city["lon"], city["radius_km"])
        shift = rng.choice(eng["shifts"])
        engineers.append(create_engineer(user.full_name, skills, lat, lon, user_id=user.id,
                                         shift_start=shift[0], shift_end=shift[1]))
    db.session.flush()
    low, high = spec["van_quantity"]
    for engineer in engineers:
        for part in parts:
            if part.product_line is None or f",{part.product_line}," in engineer.skills:
                db.session.add(StockLevel(part_id=part.id, location=f"van:{engineer.id}",
                                          quantity=rng.randint(low, high), reserved=0))
    return {"accounts": len(spec["accounts"]), "assets": len(assets), "engineers": len(engineers),
            "parts": len(parts)}


def demo_report_link() -> str | None:
    """The fault-report link of the first seeded asset (printed by the run command)."""
    asset = db.session.scalar(select(Asset).order_by(Asset.id).limit(1))
    return f"/report/{service_requests.asset_report_token(asset)}" if asset else None
