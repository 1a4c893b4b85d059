"""Workflows: definitions (definition.py, templates.py), their CRUD (service.py) and their executions
on DBOS (engine.py, executions.py)."""
