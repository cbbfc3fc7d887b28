"""Where the SQL files and the Alembic migrations are, in a checkout and in an installed wheel.

The top-level ``sql/`` and ``migrations/`` folders are the packages ``app._sql`` and
``app._migrations`` (a ``package-dir`` mapping in pyproject.toml): an editable install maps
them to the checkout's folders, a wheel carries them under ``app/`` in site-packages. Both are
found here through ``importlib.resources``, never relative to this file.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

SQL_PACKAGE = "app._sql"
MIGRATIONS_PACKAGE = "app._migrations"


def _package_dir(package: str) -> Path:
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"{package} is not installed: an editable install made before it existed lacks it; "
            "reinstall (pip install -e .)"
        ) from exc
    if not isinstance(root, Path):  # e.g. a zipped install: Alembic needs a real directory
        raise RuntimeError(f"{package} is not a directory on the file system ({root!r})")
    return root


def sql_dir() -> Path:
    """The folder of the repeatable ``*.sql`` files (the checkout's ``sql/``)."""
    return _package_dir(SQL_PACKAGE)


def migrations_dir() -> Path:
    """Alembic's script location: env.py and versions/ (the checkout's ``migrations/``)."""
    return _package_dir(MIGRATIONS_PACKAGE)
