"""The Content-Security-Policy every response carries, and the one thing configuration adds to it:
the origin of the engineers' map tiles (FLOWDESK_MAP_TILE_URL)."""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

# Everything from our own origin; no plugins, no framing by other sites, forms and <base> only to us.
# Images may also be data: URLs: bpmn-js's and the properties panel's stylesheets draw small icons so.
_POLICY = ("default-src 'self'; img-src {images}; style-src 'self' 'unsafe-inline'; object-src 'none'; "
           "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def tile_origin(url_template: str) -> str:
    """The CSP source for a Leaflet tile URL template: its scheme and host, Leaflet's ``{s}.``
    subdomain placeholder becoming a wildcard label; raises ValueError for anything else."""
    parts = urlsplit(url_template)
    host = re.sub(r"^\{s\}\.", "*.", parts.netloc)
    if parts.scheme not in ("http", "https") or not host or re.search(r"[{}\s;,'\"]", host):
        raise ValueError(f"FLOWDESK_MAP_TILE_URL must be an http(s) URL whose host may vary only in a leading "
                         f"{{s}}. (like https://{{s}}.tile.example.org/{{z}}/{{x}}/{{y}}.png): {url_template!r}")
    return f"{parts.scheme}://{host}"


@functools.lru_cache(maxsize=4)
def content_security_policy(tile_url: str | None = None) -> str:
    """The policy; with map tiles configured, their origin may serve images too."""
    images = "'self' data:" + (f" {tile_origin(tile_url)}" if tile_url else "")
    return _POLICY.format(images=images)
