"""Alembic's versioned DDL, installed as the package ``app._migrations`` (see pyproject.toml).

This file only makes the folder a package, so that ``importlib.resources`` finds it in the
checkout (editable install) as in a wheel; Alembic loads env.py and versions/ by path.
"""
