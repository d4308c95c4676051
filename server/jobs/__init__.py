"""Batch jobs: the manager that runs them, their SQLite store, and the Jobs RPCs."""
