"""Storage: SQLModel tables, the async store, and Alembic migrations."""
