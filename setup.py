"""Packaging beyond what pyproject.toml can say: the Alembic revisions ship inside the wheel.

The repository keeps its migrations in the top-level ``alembic/`` folder (one copy of each
revision). That folder cannot be installed under its own name: a top-level package ``alembic``
would shadow the Alembic library. It is installed as the package ``livesell_migrations`` instead
(``package_dir`` maps the name to the folder), and ``adapters.sqlalchemy.migrations`` finds it
there, in a wheel as in an editable install (ADR 0016).
"""

from setuptools import find_packages, setup

MIGRATIONS = "livesell_migrations"

setup(
    packages=[
        *find_packages(include=["domain*", "ports*", "application*", "adapters*", "entrypoints*"]),
        MIGRATIONS,
        f"{MIGRATIONS}.versions",
    ],
    package_dir={MIGRATIONS: "alembic"},
    package_data={MIGRATIONS: ["script.py.mako"]},
)
