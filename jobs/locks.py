"""The advisory-lock keys pgreco takes, by name: the Python copy of SQL's ``reco.lock_key`` (sql/005_registry.sql).

Python needs one before the SQL exists (``reco migrate`` locks an empty database) and tests take some to make
the database wait; tests/test_registry.py checks that this table equals the SQL registry.
"""

from __future__ import annotations

#: name -> key; a two-key lock takes the key first (pg_advisory_lock(key, tenant or hashtext(...)))
LOCK_KEYS: dict[str, int] = {
    "migrate": 7_281_001,  # one `reco migrate` at a time (app/migrate.py), one key
    "event_partitions": 7_281_002,  # creators of reco.events partitions, one key
    "job": 7_281_100,  # one run per job and tenant: (key, hashtext(job || ':' || tenant id))
    "exposures": 7_281_200,  # exposure writers (shared) against the bandit job's count: (key, tenant id)
    "ingest": 7_281_201,  # ingest (shared) against erasure and the bandit counts: (key, tenant id)
    "experiment_start": 7_281_300,  # one experiment start per scenario: (key, hashtext(tenant id/scenario))
    "import_stage": 7_281_400,  # a live import's staging table: (key, hashtext(table name))
    "churn_models": 7_281_101,  # churn model versions registered/activated one at a time: (key, tenant id)
    "retention_list": 7_281_500,  # one retention list drawn at a time: (key, tenant id)
}


def lock_key(name: str) -> int:
    """The key of a named advisory lock (KeyError for an unknown name, as SQL's reco.lock_key raises)."""
    return LOCK_KEYS[name]
