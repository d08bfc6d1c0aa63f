"""Alembic migrations of the state database, applied at start on SQLite and PostgreSQL alike."""
