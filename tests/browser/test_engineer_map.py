"""The dispatcher's map of engineers (/desk/engineers): Leaflet over the shipped outline of the seeded
city by default, circles coloured like the legend; with FLOWDESK_MAP_TILE_URL, tiles from that origin,
which the CSP then admits. Also: every page names the favicon."""

from __future__ import annotations

import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from server.aftersales import engineers
from server.aftersales.models import Engineer
from server.aftersales.seeding import load_service_seeds
from server.auth.models import User
from server.db import transaction
from server.extensions import db

from .conftest import sign_in

SEEDS = Path(__file__).resolve().parents[2] / "seeds" / "service.json"
WATCH_CSP = """window.fdViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.fdViolations.push(e.violatedDirective + " " + e.blockedURI));"""


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A one-colour PNG (a stand-in map tile)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def tile_server():
    """A tile server on another loopback port (another origin): every path answers a tile."""
    tile = _png(256, 256, (230, 236, 222))
    requested = []

    class Tiles(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            requested.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(tile)))
            self.end_headers()
            self.wfile.write(tile)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Tiles)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", requested
    server.shutdown()
    server.server_close()


def _seed_engineers(app) -> dict[str, int]:
    """The demo engineers from seeds/service.json; a few on break or off, some reporting a position.
    Returns how many engineers have each status."""
    with app.app_context():
        with transaction():
            load_service_seeds(json.loads(SEEDS.read_text()))
        with transaction():
            rows = db.session.scalars(select(Engineer).order_by(Engineer.id)).all()
            for n, engineer in enumerate(rows):
                user = db.session.get(User, engineer.user_id)
                if n % 7 == 3:
                    engineers.set_engineer_status(user, "break")
                elif n % 9 == 4:
                    engineers.set_engineer_status(user, "off")
                if n % 3 == 0:
                    engineers.ping_position(user, engineer.home_lat + 0.01, engineer.home_lon - 0.01)
        counts: dict[str, int] = {}
        for engineer in db.session.scalars(select(Engineer)):
            counts[engineer.status] = counts.get(engineer.status, 0) + 1
        db.session.remove()
    return counts


def _open_map(open_page, width: int):
    page = open_page(width, 900)
    page.add_init_script(WATCH_CSP)
    sign_in(page, "desk")
    page.goto("/desk/engineers")
    page.wait_for_selector("#engineer-map[data-rendered='true']")
    return page


def _rgb(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def test_the_dispatcher_sees_the_engineers_on_a_map_of_the_city_in_the_legends_colours(
        app, make_user, open_page, output_dir):
    counts = _seed_engineers(app)
    assert set(counts) == {"available", "break", "off"}
    make_user("dispatcher", username="desk")
    for width in (375, 1366):
        page = _open_map(open_page, width)
        legend = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(".legend [data-status]")]
            .map((item) => [item.dataset.status, getComputedStyle(item.querySelector(".swatch")).backgroundColor]))""")
        assert set(legend) == {"available", "break", "off"}
        for status, colour in legend.items():
            markers = page.locator(f"#engineer-map path.fd-marker-{status}")
            assert markers.count() == counts[status], status
            fills = {_rgb(fill) for fill in markers.evaluate_all("(all) => all.map((m) => m.getAttribute('fill'))")}
            assert fills == {colour}, f"{status} circles are drawn in the legend's colour"
        assert page.locator("#engineer-map path.fd-marker-home").count() > 0, "no recent position: faded"
        assert page.locator("#engineer-map path.fd-outline").count() >= 2, "the city's outline is drawn"
        assert page.locator("#engineer-map img.leaflet-tile").count() == 0, "no tiles unless configured"
        inside = page.evaluate("""() => {
            const box = document.getElementById("engineer-map").getBoundingClientRect();
            return [...document.querySelectorAll("#engineer-map path.fd-marker")].every((m) => {
                const r = m.getBoundingClientRect();
                return r.left >= box.left && r.right <= box.right && r.top >= box.top && r.bottom <= box.bottom;
            });
        }""")
        assert inside, "every engineer is in view"
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "no sideways scrolling"
        page.screenshot(path=str(output_dir / f"engineers-{width}.png"), full_page=True)
        page.locator("#engineer-map").screenshot(path=str(output_dir / f"map-{width}.png"))
        assert page.evaluate("window.fdViolations") == [] and page.errors == []


def test_with_a_tile_url_the_map_draws_tiles_and_the_csp_admits_only_their_origin(
        app, world, make_user, open_page, output_dir, tile_server, monkeypatch):
    origin, requested = tile_server
    monkeypatch.setitem(app.config, "MAP_TILE_URL", origin + "/{z}/{x}/{y}.png")
    monkeypatch.setitem(app.config, "MAP_TILE_ATTRIBUTION", "Test tiles")
    make_user("dispatcher", username="desk")
    with app.app_context(), transaction():
        db.session.get(Engineer, world["engineers"][0]["id"]).name = "<b>Eve</b>"
    page = _open_map(open_page, 1366)
    page.wait_for_selector("#engineer-map img.leaflet-tile-loaded")
    page.locator("#engineer-map path.fd-marker").first.hover()
    assert page.inner_text(".leaflet-tooltip").startswith("<b>Eve</b> · available · 0 open jobs"), \
        "a name is shown as text, never as HTML"
    assert requested, "the tiles came from the configured server"
    assert page.locator("#engineer-map path.fd-marker").count() == len(world["engineers"])
    assert page.locator("#engineer-map path.fd-outline").count() == 0
    assert "Test tiles" in page.inner_text(".leaflet-control-attribution")
    page.screenshot(path=str(output_dir / "engineers-tiles-1366.png"), full_page=True)
    assert page.evaluate("window.fdViolations") == [] and page.errors == []
    policy = page.request.get("/desk/engineers").headers["content-security-policy"]
    assert f"img-src 'self' data: {origin};" in policy


def test_every_page_names_the_favicon_in_svg_and_ico(client, open_page, live_server):
    page = open_page()
    page.goto("/login")
    icons = page.evaluate("[...document.querySelectorAll('link[rel~=icon]')].map((l) => [l.type, l.href])")
    assert [kind for kind, _ in icons] == ["image/svg+xml", ""]
    for _, href in icons:
        response = client.get(href.removeprefix(live_server))
        assert response.status_code == 200 and response.data, href
        response.close()
    page.goto("/report/forged-token")  # the customers' pages too
    assert page.locator("link[rel~=icon]").count() == 2
