"""The pgreco job catalog and runner."""

#: job -> the serving tables it rewrites (a tenant's rows deleted and inserted): vacuumed after the job,
#: so requests do not wade through the dead rows and index entries until autovacuum comes (on
#: MovieLens-100K, after the 25 rewrites of a tune run, serving took 4.0 ms per call instead of 2.5)
REWRITES: dict[str, tuple[str, ...]] = {
    "feature_stats": ("reco.segments", "reco.feature_stats"),
    "cohort_priors": ("reco.cohort_priors",),
    "feature_neighbors": ("reco.feature_neighbors", "reco.feature_embeddings", "reco.neighbor_weights"),
    "embeddings": ("reco.feature_factors",),
    "bandit": ("reco.bandit_arms",),
}


def vacuum_rewritten(conn, job: str) -> None:
    """VACUUM the serving tables ``job`` rewrites (REWRITES), on an autocommit connection (outside any
    transaction); a role that does not own them is told so in a warning and they are left to autovacuum."""
    if job in REWRITES:
        conn.execute(f"VACUUM (SKIP_LOCKED) {', '.join(REWRITES[job])}")


def mark_fresh(conn, steps: list[str] | tuple[str, ...]) -> None:
    """Tell the SQL job bodies of this session which numpy steps were just computed (the session
    setting reco.python_steps, read by reco._python_step); pg_cron's sessions never set it."""
    conn.execute("SELECT set_config('reco.python_steps', %s, false)", (",".join(steps),))
