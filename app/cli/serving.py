"""`reco recommend`, `starter`, `similar`, `plan`: a quick look at the serving functions."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app import db
from app.cli.common import (
    TenantOpt,
    console,
    print_rows,
)
from jobs.components import COMPONENTS

commands = typer.Typer()


def _explain(reasons: dict) -> str:
    parts = [f"{k} {reasons[k]:.2f}" for k in COMPONENTS
             if isinstance(reasons.get(k), int | float) and reasons[k] > 0]
    text = ", ".join(parts)
    if reasons.get("because"):
        text += "; because you used " + ", ".join(reasons["because"])
    if reasons.get("seen"):
        text += "; already used"
    return text


#: a serving function's rows with each feature's name (the catalog's), in rank order
_WITH_NAMES = """SELECT r.*, f.name FROM {call} r
                 LEFT JOIN reco.features f ON f.tenant_id = reco.tenant_id(%(tenant)s) AND f.feature_id = r.feature_id
                 ORDER BY r.rank"""


@commands.command()
def recommend(user: str, k: Annotated[int, typer.Option("--k")] = 10,
              explain: Annotated[bool, typer.Option("--explain", help="show the reasons")] = False,
              exclude_seen: bool = False, tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.recommend_features(USER, k), with the features' names."""
    with db.connect() as conn:
        rows = conn.execute(
            _WITH_NAMES.format(call="reco.recommend_features(%(user)s, %(k)s, %(options)s::jsonb, %(tenant)s)"),
            {"user": user, "k": k, "options": json.dumps({"exclude_seen": exclude_seen}), "tenant": tenant},
        ).fetchall()
    if explain:
        for r in rows:
            r["why"] = _explain(r["reasons"])
        print_rows(rows, ["rank", "feature_id", "name", "score", "why"], full=("feature_id", "name"))
        if rows:
            console.print(f"segment: {rows[0]['reasons'].get('segment')}", markup=False, highlight=False)
    else:
        print_rows(rows, ["rank", "feature_id", "name", "score"], full=("feature_id", "name"))


@commands.command()
def starter(user: str, k: Annotated[int, typer.Option("--k")] = 3, tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.starter_features(USER, k), with the features' names."""
    with db.connect() as conn:
        rows = conn.execute(_WITH_NAMES.format(call="reco.starter_features(%(user)s, %(k)s, %(tenant)s)"),
                            {"user": user, "k": k, "tenant": tenant}).fetchall()
    for r in rows:
        r["category"] = r["reasons"].get("category")
    print_rows(rows, ["rank", "feature_id", "name", "category", "score"], full=("feature_id", "name"))


@commands.command()
def similar(feature: str, k: Annotated[int, typer.Option("--k")] = 5, tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.similar_features(FEATURE, k), with the features' names."""
    with db.connect() as conn:
        rows = conn.execute(_WITH_NAMES.format(call="reco.similar_features(%(feature)s, %(k)s, %(tenant)s)"),
                            {"feature": feature, "k": k, "tenant": tenant}).fetchall()
    print_rows(rows, ["rank", "feature_id", "name", "score", "source"], full=("feature_id", "name"))


@commands.command()
def plan(user: str, tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.recommend_plan(USER)."""
    with db.connect() as conn:
        rows = conn.execute("SELECT * FROM reco.recommend_plan(%s, %s)", (user, tenant)).fetchall()
    for r in rows:
        r["why_not"] = r["reasons"].get("why_not") or ""
        r["monthly_uses"] = r["reasons"].get("monthly_uses")
    print_rows(rows, ["rank", "plan_id", "name", "expected_monthly_cost", "fits", "monthly_uses", "why_not"],
           full=("plan_id", "name"))
