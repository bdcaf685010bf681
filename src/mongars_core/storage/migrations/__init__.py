"""Alembic migrations of the monGARS schema, applied by ``mongars db upgrade``."""
