"""The pgreco job catalog and runner."""


def mark_fresh(conn, steps: list[str] | tuple[str, ...]) -> None:
    """Tell the SQL job bodies of this session which numpy steps were just computed (the session
    setting reco.python_steps, read by reco._python_step); pg_cron's sessions never set it."""
    conn.execute("SELECT set_config('reco.python_steps', %s, false)", (",".join(steps),))
