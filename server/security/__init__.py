"""Cross-cutting protections (rate limits, the Content-Security-Policy)."""
