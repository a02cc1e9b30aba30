"""After-sales service: assets with QR codes, SLA clocks, nearest-engineer dispatch, parts, payment, rating."""
