"""Small service functions every BPMN model may call (domain modules add their own)."""

from __future__ import annotations

from ..db import utcnow
from ..engine import register_service


@register_service("now_iso")
def now_iso() -> str:
    """The current UTC time as ISO text (for stamping data in scripts)."""
    return utcnow().isoformat()
