"""The Content-Security-Policy admits map tiles only from the configured tile server's origin."""

from __future__ import annotations

import pytest

from server.app import create_app
from server.security.csp import content_security_policy, tile_origin


def _directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_without_a_tile_url_images_come_only_from_our_origin_and_data_urls(client):
    policy = _directives(client.get("/login").headers["Content-Security-Policy"])
    assert policy["img-src"] == "'self' data:" and policy["default-src"] == "'self'"


@pytest.mark.parametrize(("template", "origin"), [
    ("https://tile.openstreetmap.org/{z}/{x}/{y}.png", "https://tile.openstreetmap.org"),
    ("https://{s}.tile.example.org/{z}/{x}/{y}.png?key=abc", "https://*.tile.example.org"),
    ("http://127.0.0.1:8080/tiles/{z}/{x}/{y}.png", "http://127.0.0.1:8080"),
])
def test_a_tile_url_adds_its_origin_to_the_image_sources(template, origin):
    assert tile_origin(template) == origin
    assert _directives(content_security_policy(template))["img-src"] == f"'self' data: {origin}"


@pytest.mark.parametrize("template", [
    "javascript:alert(1)", "//tiles.example.org/{z}/{x}/{y}.png", "https://tiles.{s}.example.org/{z}.png",
    "https://example.org; script-src *", "ftp://tiles.example.org/{z}/{x}/{y}.png",
])
def test_a_malformed_tile_url_stops_the_app_from_starting(template):
    with pytest.raises(ValueError, match="FLOWDESK_MAP_TILE_URL"):
        create_app({"TESTING": True, "MAP_TILE_URL": template})
