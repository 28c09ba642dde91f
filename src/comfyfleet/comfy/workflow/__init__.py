"""Workflow tools: load, convert UI to API, validate offline, override, list dependencies."""
