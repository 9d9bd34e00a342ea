"""Alembic migrations of the job store (run them with ``jobs.db.migrate(url)``)."""
