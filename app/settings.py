"""Process settings, read from the environment (prefix ``RECO_``).

Recommender parameters (weights, decay, ...) are not here: they live in the database
table ``reco.settings`` so that a change takes effect on the next SQL call.
"""

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    #: libpq URI of an existing server. Unset: pgreco runs its own embedded PostgreSQL.
    database_url: str | None = None
    #: Where the embedded server keeps its data (``<data_dir>/pgdata``).
    data_dir: Path = Path(".reco")
    #: Database created and used on the embedded server.
    database_name: str = "reco"
    #: Tenant used by the CLI when ``--tenant`` is not given.
    tenant: str = "default"

    @property
    def embedded(self) -> bool:
        return not self.database_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
