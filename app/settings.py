"""Process settings, read from the environment (prefix ``RECO_``).

Recommender parameters (weights, decay, ...) are not here: they live in the database
table ``reco.settings`` so that a change takes effect on the next SQL call.
"""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECO_", extra="ignore")

    #: libpq URI of an existing server. Unset: pgreco runs its own embedded PostgreSQL.
    database_url: str | None = None
    #: Where the embedded server keeps its data (``<data_dir>/pgdata``). A relative path is taken
    #: from the current directory: the checkout's root, or wherever an installed ``reco`` runs.
    data_dir: Path = Path(".reco")
    #: Database created and used on the embedded server.
    database_name: str = "reco"
    #: Tenant used by the CLI when ``--tenant`` is not given.
    tenant: str = "default"

    # --- the REST API (reco serve) ---
    #: Statement timeout of a read request (recommendations, starter, similar, plan), ms. Past
    #: it, recommendation endpoints answer with the last-known popular list ("degraded": true).
    api_timeout_ms: int = 50
    #: Statement timeout of a write request (upserts, events, erasure), ms.
    api_write_timeout_ms: int = 30_000
    #: Connections per worker process for reads and for writes. The workers share one listening
    #: socket and a burst of new client connections tends to land on one of them, so each
    #: worker's read pool is sized to keep the database busy on its own (about 4 per database core).
    api_pool_size: int = 8
    api_write_pool_size: int = 4
    #: Seconds a request waits for a free connection before it is degraded (reads) or refused (writes).
    api_pool_timeout: float = 0.5
    #: Seconds between refreshes of the in-memory popular lists served when the database is slow.
    api_popular_refresh: float = 30.0
    #: Largest request body accepted, bytes (413 above; checked on Content-Length and while reading).
    api_max_body_bytes: int = 4 * 1024 * 1024
    #: Seconds a key stays usable for degraded answers after the database last confirmed it. The
    #: API re-checks the keys it has seen every api_popular_refresh seconds (a revoked key is
    #: forgotten then, or at its next request); while the database is down nothing can be checked,
    #: so past this age a key gets 503 instead of the popular list.
    api_key_ttl: float = 300.0
    #: Requests a second each API key may make on average (a token bucket per key, checked before
    #: the database is called; 429 with Retry-After past it). 0 turns the limit off. Per worker
    #: process: with ``reco serve --workers N`` a key may get up to N times this in all.
    api_rate_limit: float = Field(100.0, ge=0)
    #: Requests a key may make at once after a quiet spell (the bucket's size).
    api_rate_burst: int = Field(200, ge=1)
    #: Hours a console login lasts at most (the server ends the session then, whatever its use).
    console_session_hours: float = Field(12.0, ge=1 / 60, le=720)
    #: Minutes a console session may stay unused before the server ends it.
    console_idle_minutes: float = Field(30.0, ge=1, le=43_200)
    #: Unknown API keys a client address may try a second on average (a token bucket per address, checked
    #: before the database is asked about a key it has not confirmed); 429 with Retry-After past it, so a
    #: client trying random keys costs the database a few round trips, not one each. 0 turns it off.
    api_unknown_key_rate: float = Field(0.2, ge=0)
    #: Unknown keys a client address may try at once after a quiet spell.
    api_unknown_key_burst: int = Field(20, ge=1)
    #: Host names (the Host header, without the port) the API and console answer to, comma-separated;
    #: "*.example.com" matches its subdomains, "*" any host (not advised: DNS rebinding). Others get 400.
    trusted_hosts: str = "localhost,127.0.0.1,::1,0.0.0.0"
    #: Bearer token a Prometheus scraper sends to /metrics to get the job metrics per tenant (label
    #: tenant); without it (or unset) they are summed over tenants, so no tenant slug is shown.
    metrics_token: SecretStr | None = None
    # --- fairness between tenants (app.api.budgets): each tenant's budget of what is expensive, in each
    # API worker process. These are the defaults; reco.tenant_budgets overrides them per tenant
    # (`reco tenants budget SLUG`). 0 is unlimited. Past a budget: 429 with Retry-After.
    #: Events a second a tenant may POST (a token bucket holding one full batch; a batch may borrow ahead).
    tenant_events_per_s: float = Field(1_000.0, ge=0)
    #: Request-body bytes a second a tenant may send to the write routes, charged on Content-Length
    #: before the body is read or parsed (the bucket holds one body of api_max_body_bytes).
    tenant_bytes_per_s: float = Field(1_000_000.0, ge=0)
    #: Statements a tenant may run at once on the read pool (of api_pool_size) and the write pool (of
    #: api_write_pool_size); a request past them waits up to api_pool_timeout for its tenant's turn.
    tenant_read_statements: int = Field(4, ge=0)
    tenant_write_statements: int = Field(2, ge=0)
    #: Console pages a second a tenant may load (bursts of 10), and console queries it may run at once.
    tenant_console_per_s: float = Field(2.0, ge=0)
    tenant_console_statements: int = Field(1, ge=0)
    #: Seconds the API keeps a key's tenant and budget before reading them again (reco.api_tenant_budget).
    tenant_budget_ttl: float = Field(10.0, gt=0)
    #: Level of the API's log (pgreco.*): info logs one line per request; warning keeps the
    #: server errors (5xx) and failures (database errors, unexpected exceptions).
    log_level: str = "info"

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("trusted_hosts")
    @classmethod
    def _trusted_hosts(cls, value: str) -> str:
        if not [h for h in value.split(",") if h.strip()]:
            raise ValueError("at least one host name (or *)")
        return value

    @property
    def trusted_host_names(self) -> tuple[str, ...]:
        return tuple(h.strip().lower().strip("[]") for h in self.trusted_hosts.split(",") if h.strip())

    @property
    def embedded(self) -> bool:
        return not self.database_url


@lru_cache
def get_settings() -> Settings:
    return Settings()
