"""`reco experiment …` and `reco scenario …`: the SQL functions of sql/048 and sql/080, readably."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app import db
from app.cli.common import TenantOpt, console

experiment_app = typer.Typer(help="A/B tests and interleaving: create, start, stop, list, report.",
                             no_args_is_help=True)
scenario_app = typer.Typer(help="Scenarios (placements): named setting overrides requests can ask for.",
                           no_args_is_help=True)
metric_app = typer.Typer(help="Metrics over the users' events, for experiments.", no_args_is_help=True)


def _json(text: str, what: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{what} is not JSON: {exc}") from None


@scenario_app.command("set")
def scenario_set(name: str,
                 overrides: Annotated[str, typer.Option(help='JSON: {"setting": value, ...}')] = "{}",
                 description: str = "", tenant: TenantOpt = None) -> None:
    """SELECT reco.upsert_scenario(NAME, overrides)."""
    with db.connect() as conn:
        conn.execute("SELECT reco.upsert_scenario(%s, %s::jsonb, %s, %s)",
                     (name, json.dumps(_json(overrides, "--overrides")), description, tenant))
    console.print(f"scenario {name}: {overrides}")


@scenario_app.command("list")
def scenario_list(tenant: TenantOpt = None) -> None:
    with db.connect() as conn:
        rows = conn.execute("SELECT name, overrides, description FROM reco.scenarios"
                            " WHERE tenant_id = reco.tenant_id(%s) ORDER BY name", (tenant,)).fetchall()
    table = Table("scenario", "overrides", "description")
    table.add_row("default", "{}", "the tenant's settings")
    for r in rows:
        table.add_row(r["name"], json.dumps(r["overrides"]), r["description"])
    console.print(table)


@metric_app.command("set")
def metric_set(name: str, event_kind: Annotated[str, typer.Option("--kind", help="the event kind it reads")],
               agg: Annotated[str, typer.Option(help="any, count, sum or mean")],
               prop: Annotated[str | None, typer.Option(help="numeric props field (sum, mean)")] = None,
               lower_is_better: bool = False, tenant: TenantOpt = None) -> None:
    """SELECT reco.create_metric(NAME, kind, agg, prop)."""
    with db.connect() as conn:
        conn.execute("SELECT reco.create_metric(%s, %s, %s, %s, %s, '', %s)",
                     (name, event_kind, agg, prop, not lower_is_better, tenant))
    console.print(f"metric {name}: {agg} of {event_kind} events" + (f" ({prop})" if prop else ""))


@experiment_app.command("create")
def create(name: str,
           variants: Annotated[str, typer.Option(help='JSON array; the first is the control: '
                                                      '[{"name": "control"}, {"name": "b", "weight": 1, '
                                                      '"overrides": {"weight_usercf": 0.3}}]')],
           scenario: Annotated[str, typer.Option(help="the scenario it runs in")] = "default",
           traffic: Annotated[float, typer.Option(help="share of the scenario's users in it")] = 1.0,
           kind: Annotated[str, typer.Option(help="ab or interleave")] = "ab",
           primary: Annotated[str, typer.Option(help="the primary metric")] = "clicked",
           secondary: Annotated[list[str] | None, typer.Option(help="a secondary metric (repeatable)")] = None,
           guardrail: Annotated[list[str] | None, typer.Option(help="a guardrail metric (repeatable)")] = None,
           looks: Annotated[int, typer.Option(help="planned looks (sequential monitoring)")] = 1,
           planned_users: Annotated[int | None, typer.Option(help="planned users in all arms")] = None,
           options: Annotated[str, typer.Option(help="more options as JSON (oec, alpha, salt, pre_period, …)")] = "{}",
           tenant: TenantOpt = None) -> None:
    """SELECT reco.create_experiment(NAME, variants, options): a draft."""
    opts = {"scenario": scenario, "traffic": traffic, "kind": kind, "primary_metric": primary,
            "secondary_metrics": secondary or [], "guardrail_metrics": guardrail or [], "looks": looks,
            **({"planned_users": planned_users} if planned_users else {}), **_json(options, "--options")}
    with db.connect() as conn:
        conn.execute("SELECT reco.create_experiment(%s, %s::jsonb, %s::jsonb, %s)",
                     (name, json.dumps(_json(variants, "--variants")), json.dumps(opts), tenant))
    console.print(f"experiment {name} created (draft); start it with: reco experiment start {name}")


@experiment_app.command("start")
def start(name: str, tenant: TenantOpt = None) -> None:
    with db.connect() as conn:
        e = conn.execute("SELECT reco.start_experiment(%s, %s) AS e", (name, tenant)).fetchone()["e"]
    since = datetime.fromisoformat(e["started_at"])
    console.print(f"experiment {name} running since {since:%Y-%m-%d %H:%M} "
                  f"(users in [{e['users_from']:.4f}, {e['users_to']:.4f}) of scenario {e['scenario']})")


@experiment_app.command("stop")
def stop(name: str, tenant: TenantOpt = None) -> None:
    with db.connect() as conn:
        conn.execute("SELECT reco.stop_experiment(%s, %s)", (name, tenant))
    console.print(f"experiment {name} stopped")


@experiment_app.command("list")
def list_(tenant: TenantOpt = None) -> None:
    with db.connect() as conn:
        rows = conn.execute("SELECT * FROM reco.experiment_list WHERE tenant = (SELECT slug FROM reco.tenants"
                            " WHERE tenant_id = reco.tenant_id(%s)) ORDER BY name", (tenant,)).fetchall()
    from app.cli.common import print_table

    table = Table("experiment", "scenario", "kind", "status", "traffic", "primary", "variants", "started")
    for column in table.columns[:2]:  # names are never cut (in a pipe the table is as wide as its cells)
        column.no_wrap = True
    for r in rows:
        table.add_row(r["name"], r["scenario"], r["kind"], r["status"], f"{r['traffic']:.0%}", r["primary_metric"],
                      ", ".join(f"{v['name']} ({v['weight']:g})" for v in r["variants"]),
                      f"{r['started_at']:%Y-%m-%d %H:%M}" if r["started_at"] else "")
    print_table(table)


def _pct(v, signed: bool = True) -> str:
    return "" if v is None else (f"{v:+.1%}" if signed else f"{v:.1%}")


def _num(v) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"


def _p(v) -> str:
    """4 decimals, scientific below 0.0001 (as reco._format_p): never 0.0000000."""
    return "" if v is None else (f"{v:.1e}" if 0 < v < 1e-4 else f"{v:.4f}")


def _lift(r: dict) -> str:
    """The relative lift and its CI where there is one, else the absolute."""
    if r["rel_lift"] is not None:
        ci = f" [{_pct(r['rel_low'])}, {_pct(r['rel_high'])}]" if r["rel_low"] is not None else ""
        return _pct(r["rel_lift"]) + ci
    if r["lift"] is not None:
        ci = f" [{_num(r['lift_low'])}, {_num(r['lift_high'])}]" if r["lift_low"] is not None else ""
        return f"{r['lift']:+.4g}" + ci
    return ""


def print_report(rows: list[dict], name: str) -> None:
    out = Console(soft_wrap=True, width=max(console.width, 160))
    for r in rows:
        if r["section"] == "settings":
            out.print(f"settings changed while it ran: {r['note']}", style="yellow", markup=False, highlight=False)
    for r in rows:
        if r["section"] == "srm":
            out.print(f"[bold]sample ratio[/bold]: {r['note']}")
    table = Table(title=f"experiment {name}", title_justify="left")
    for column in ("metric", "variant", "users", "mean", "lift [95% CI]", "p (adjusted)", "P(better)",
                   "CUPED lift [95% CI]", "var. −"):
        table.add_column(column, no_wrap=True)
    # the report adjusts the primary metric's p over the treatments by Holm, the secondary metrics' by
    # Benjamini-Hochberg (sql/080_experiment_analysis.sql); the primary metric's rows come first
    primary_metric = next((r["metric"] for r in rows if r["section"] == "metric"), None)
    for r in rows:
        if r["section"] not in ("metric", "guardrail", "oec", "interleave"):
            continue
        label = r["metric"] + (" (guardrail)" if r["section"] == "guardrail" else "")
        method = "Holm" if r["metric"] == primary_metric else "BH"
        p = _p(r["p_value"]) + (f" ({method} {_p(r['p_adjusted'])})" if r["p_adjusted"] is not None else "")
        cuped = (_pct(r["cuped_lift"]) + f" [{_pct(r['cuped_low'])}, {_pct(r['cuped_high'])}]"
                 if r["cuped_lift"] is not None else "")
        table.add_row(label, r["variant"] or "", _num(r["n"]), _num(r["mean"]), _lift(r), p,
                      _pct(r["p_better"], False), cuped, _pct(r["variance_reduction"], False))
    out.print(table)
    if any(r["section"] == "sequential" for r in rows):
        out.print("p values and CIs above are fixed-horizon: interim, valid if read once at the planned end; "
                  "the decision uses the sequential test below", markup=False, highlight=False)
    primary = next((r for r in rows if r["section"] == "metric" and r["note"]), None)
    if primary:
        out.print(f"{primary['variant']}, {primary['metric']}: {primary['note']}", markup=False, highlight=False)
    for r in rows:
        if r["section"] == "sequential":
            who = f"{r['variant']}: " if r["variant"] else ""
            interval = (f" [{_num(r['lift_low'])}, {_num(r['lift_high'])}]" if r["lift_low"] is not None else "")
            out.print(f"[bold]sequential[/bold] {who}{r['note']}{interval}")
    for r in rows:
        if r["section"] == "decision":
            out.print(f"[bold]decision: {r['decision']}[/bold] — {r['note']}")


@experiment_app.command("report")
def report(name: str, as_json: Annotated[bool, typer.Option("--json", help="the rows as JSON")] = False,
           tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.experiment_report(NAME): SRM first, lifts with CIs, CUPED, Bayesian, sequential,
    the decision."""
    with db.connect() as conn:
        rows = conn.execute("SELECT * FROM reco.experiment_report(%s, %s)", (name, tenant)).fetchall()
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    print_report(rows, name)
