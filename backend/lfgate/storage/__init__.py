"""Storage: chats and their message trees, in SQLite (default) or PostgreSQL, with Alembic
migrations applied at start-up."""
