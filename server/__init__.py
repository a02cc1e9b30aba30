"""Flowdesk: a BPMN-driven service-management platform (Flask + SpiffWorkflow + RQ)."""
