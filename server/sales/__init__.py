"""Sales: leads, opportunities, quotes, discount approvals, funnel."""
