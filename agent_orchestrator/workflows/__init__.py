"""Workflow graphs: generic templates and the registry of runnable workflows."""
