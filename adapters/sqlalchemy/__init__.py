"""Persistence on SQLAlchemy 2.x Core: Postgres in production, SQLite as the embedded default.

``tables`` holds the one ``MetaData`` (Alembic reads it too), ``mappers`` the explicit
row-to-domain functions, ``repositories`` one class per port, ``unit_of_work`` the transaction and
``engine`` the pooled engine (ADR 0005).
"""
