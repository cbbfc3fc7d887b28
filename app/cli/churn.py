"""`reco churn …`: train, score, list, activate and roll back the churn models, one user's score; and
`reco bench churn` (the CDNOW benchmark, app/tools/bench_churn.py), registered on the bench group by
app/cli/__init__.py."""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Annotated

import typer

from app import db
from app.cli.common import TenantOpt, console, err

churn_app = typer.Typer(help="Churn risk: models trained on rolling snapshots, scores, the registry.",
                        no_args_is_help=True)

AsOf = Annotated[str | None, typer.Option("--as-of", help="the day (YYYY-MM-DD): features read the events before it")]


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date YYYY-MM-DD", param_hint="--as-of/--until") from None


def _slug(tenant: str | None) -> str:
    return tenant or "default"


@churn_app.command("train")
def train_cmd(tenant: TenantOpt = None,
              until: Annotated[str | None, typer.Option(help="train as if the data ended before this day "
                                                             "(YYYY-MM-DD)")] = None,
              activate: Annotated[bool, typer.Option(help="activate the better model")] = True) -> None:
    """Train the logistic regression (and LightGBM on enough rows) on rolling snapshots, validate on the newest
    matured ones, register both, activate the better (logged as a churn_train run)."""
    from jobs import logged_run
    from jobs.churn import ChurnDataError, train

    with db.connect(autocommit=True) as conn:
        try:
            with logged_run(conn, "churn_train", tenant) as log:
                r = train(conn, _slug(tenant), _day(until), activate=activate)
                log.rows, log.message = r.rows, r.message
        except ChurnDataError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            if exc.hint:
                err.print(f"hint: {exc.hint}", markup=False, highlight=False)
            raise typer.Exit(1) from None
    for kind, m in r.metrics.items():
        console.print(f"{kind} version {r.versions[kind]}: validation AUC {m['auc']:.4f}, Brier {m['brier']:.4f}"
                      + (" (active)" if activate and kind == r.active_kind else ""), highlight=False)
    console.print(r.message, markup=False, highlight=False)


@churn_app.command("score")
def score_cmd(tenant: TenantOpt = None, as_of: AsOf = None) -> None:
    """Score every eligible user with the active model into reco.churn_scores (logged as a churn_score run)."""
    from jobs import logged_run
    from jobs.churn import ChurnDataError, score

    with db.connect(autocommit=True) as conn:
        try:
            with logged_run(conn, "churn_score", tenant) as log:
                n, day, version, kind = score(conn, _slug(tenant), _day(as_of))
                log.rows, log.message = n, f"{n} users scored as of {day} with model version {version} ({kind})"
        except ChurnDataError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(1) from None
        tiers = conn.execute("SELECT tier, count(*) AS n FROM reco.churn_scores WHERE tenant_id = reco.tenant_id(%s)"
                             " AND as_of = %s GROUP BY tier ORDER BY tier", (_slug(tenant), day)).fetchall()
    console.print(log.message + "; tiers: " + ", ".join(f"{t['tier']} {t['n']}" for t in tiers),
                  markup=False, highlight=False)


@churn_app.command("models")
def models_cmd(tenant: TenantOpt = None) -> None:
    """The tenant's churn model versions with their validation AUC and Brier score, one line each."""
    with db.connect() as conn:
        rows = conn.execute("SELECT * FROM reco.churn_models(%s)", (tenant,)).fetchall()
    for r in rows:
        auc = f"{r['auc']:.4f}" if r["auc"] is not None else "-"
        brier = f"{r['brier']:.4f}" if r["brier"] is not None else "-"
        console.print(f"v{r['version']} {r['kind']}{' (active)' if r['active'] else ''}: validation AUC {auc}, "
                      f"Brier {brier}; {r['train_rows'] or 0:,} train / {r['validation_rows'] or 0:,} validation rows; "
                      f"trained {r['trained_at']:%Y-%m-%d %H:%M}" + (f"; {r['note']}" if r["note"] else ""),
                      markup=False, highlight=False)
    if not rows:
        console.print("no churn model yet: `reco churn train`", markup=False)


@churn_app.command("activate")
def activate_cmd(version: Annotated[int, typer.Argument(help="the version to activate")],
                 tenant: TenantOpt = None) -> None:
    """Activate a churn model version: SELECT reco.activate_model(tenant, version)."""
    with db.connect(autocommit=True) as conn:
        r = conn.execute("SELECT reco.activate_model(%s, %s) AS r", (_slug(tenant), version)).fetchone()["r"]
    console.print(f"active: version {r['version']} ({r['kind']}); was {r['previous'] or 'none'}", highlight=False)


@churn_app.command("rollback")
def rollback_cmd(tenant: TenantOpt = None) -> None:
    """Back to the version active before: SELECT reco.rollback_model(tenant)."""
    with db.connect(autocommit=True) as conn:
        r = conn.execute("SELECT reco.rollback_model(%s) AS r", (_slug(tenant),)).fetchone()["r"]
    console.print(f"active: version {r['version']} ({r['kind']}); was {r['previous']}", highlight=False)


@churn_app.command("user")
def user_cmd(user_id: Annotated[str, typer.Argument(help="your id of the user")], tenant: TenantOpt = None,
             live: Annotated[bool, typer.Option(help="compute now in SQL (reco.churn_score_live) instead of the "
                                                     "latest stored score")] = False,
             as_of: AsOf = None) -> None:
    """One user's churn probability, tier, reasons and model version (JSON)."""
    with db.connect() as conn:
        if live:
            r = conn.execute("SELECT * FROM reco.churn_score_live(%s, %s, %s)",
                             (_slug(tenant), user_id, _day(as_of))).fetchone()
        else:
            r = conn.execute("SELECT reco.user_churn(%s, %s) AS r", (user_id, tenant)).fetchone()["r"]
    sys.stdout.write(json.dumps(r, indent=2, default=str) + "\n")


def bench_churn(
    data: Annotated[str, typer.Option(help="cdnow (real customers), generated (planted churn: the model against the "
                                           "truth) or all")] = "all",
    live_samples: Annotated[int, typer.Option(help="single-user live scores timed")] = 300,
    users: Annotated[int, typer.Option(help="generated data: users")] = 20_000,
    reuse: Annotated[bool, typer.Option(help="keep the bench database (and its imported purchases) if it exists")]
        = True,
) -> None:
    """CDNOW (23,570 real customers): churn AUC, Brier and calibration of the models trained inside the calibration
    period, beside BG/NBD, Pareto/NBD and LR-on-RFM references; features+scoring rows/s; live score latency.
    Generated data: the model's AUC and precision against the planted truth, beside the truth's own."""
    from app.settings import get_settings
    from app.tools import bench

    if data not in ("cdnow", "generated", "all"):
        raise typer.BadParameter("--data must be cdnow, generated or all")
    say = lambda line: console.print(line, markup=False, highlight=False)  # noqa: E731
    url = bench.bench_database(db.database_url(), "churn", reuse=reuse)
    ok = True
    if data in ("cdnow", "all"):
        from app.tools.bench_churn import report, run

        res = run(url, get_settings().data_dir / "cache", log=say, live_samples=live_samples)
        ok = report(res, say) and ok
    if data in ("generated", "all"):
        from app.tools import bench_churn_generated as gen

        out = get_settings().data_dir / "bench-churn-generated"
        ok = gen.report(gen.run(url, out, users=users, log=say), say) and ok
    if not ok:
        raise typer.Exit(1)
