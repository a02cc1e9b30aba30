"""Process definitions and versions, instances, human tasks, timers, message
correlation, incidents and the audit trail."""
