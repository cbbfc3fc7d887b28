"""The scoring components of the hybrid ranking: the Python copy of SQL's ``reco.components()``
(sql/005_registry.sql). Each has a setting ``weight_<name>`` and an ``options.weights`` key; the tuned ones are
measured alone by the offline evaluation and weighted by the tune (session and explore depend on the live
request). tests/test_registry.py checks that both lists agree.
"""

from __future__ import annotations

#: every component, in the order SQL lists them
COMPONENTS: tuple[str, ...] = ("itemcf", "usercf", "prior", "popularity", "session", "explore")
#: the components the evaluation measures alone and the tune weighs
TUNED: tuple[str, ...] = ("itemcf", "usercf", "prior", "popularity")
#: the settings that weigh them
WEIGHT_SETTINGS: tuple[str, ...] = tuple(f"weight_{c}" for c in COMPONENTS)
