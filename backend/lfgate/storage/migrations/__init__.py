"""Alembic migrations, applied by lfgate.storage.database at start-up. Keep each one small."""
