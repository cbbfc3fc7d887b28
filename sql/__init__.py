"""The repeatable SQL files, installed as the package ``app._sql`` (see pyproject.toml).

This file only makes the folder a package, so that ``importlib.resources`` finds it in the
checkout (editable install) as in a wheel; ``reco migrate`` applies the ``*.sql`` files.
"""
