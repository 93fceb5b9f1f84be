"""Alembic migrations, run by `devpynode migrate` and by `serve` on embedded SQLite."""
