"""Cross-cutting protections (rate limits)."""
