"""`reco retention …`: the budgeted retention list and its loop (sql/087_retention.sql, sql/088_retention_loop.sql),
readably. No logic here: each command is one SQL call; the benchmark lives in app/tools/bench_retention.py."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app import db
from app.cli.common import TenantOpt, console

retention_app = typer.Typer(help="The budgeted retention list: whom to win back, with which action; its holdout "
                                 "loop measures what the actions really win back.", no_args_is_help=True)
dnc_app = typer.Typer(help="The do-not-contact list: users no retention list includes.", no_args_is_help=True)
actions_app = typer.Typer(help="The tenant's retention actions: cost and assumed win-back rate.",
                          no_args_is_help=True)
retention_app.add_typer(dnc_app, name="dnc")
retention_app.add_typer(actions_app, name="actions")

COLUMNS = ["list_id", "rank", "user_id", "action", "tier", "probability", "value", "win_back_rate", "rate_source",
           "cost", "expected_profit", "held_out"]


@retention_app.command("list")
def make_list(budget: Annotated[float, typer.Option(help="the most the treated users' paid actions may cost")],
              actions: Annotated[str | None, typer.Option(
                  help='JSON replacing the tenant\'s actions for this list: {"coupon": {"cost": 5, '
                       '"win_back_rate": 0.3}, ...}')] = None,
              include_held_out: Annotated[bool, typer.Option(
                  help="also print the held-out users (not to be contacted: held_out = true)")] = False,
              tenant: TenantOpt = None) -> None:
    """SELECT * FROM reco.retention_list(budget, actions): make, store and print today's list as CSV (stdout)."""
    if actions is not None:
        try:
            json.loads(actions)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"--actions is not JSON: {exc}") from None
    with db.connect() as conn:
        rows = conn.execute("SELECT * FROM reco.retention_list(%s::numeric, %s::jsonb, %s)",
                            (str(budget), actions, tenant)).fetchall()
    out = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    out.writeheader()
    for r in rows:
        if include_held_out or not r["held_out"]:
            out.writerow({k: r[k] for k in COLUMNS})


@retention_app.command("report")
def report(tenant: TenantOpt = None) -> None:
    """The lists (reco.retention_list_summary) and the measured win-back rates per action and tier
    (reco.retention_effects), after measuring the lists that matured."""
    with db.connect() as conn:
        conn.execute("SELECT reco.measure_retention_lists(%s)", (tenant,))
        lists = conn.execute("SELECT s.* FROM reco.retention_list_summary s JOIN reco.tenants t ON t.slug = s.tenant"
                             " WHERE t.tenant_id = reco.tenant_id(%s) ORDER BY s.created_at DESC LIMIT 20",
                             (tenant,)).fetchall()
        effects = conn.execute("SELECT * FROM reco.retention_effects(%s)", (tenant,)).fetchall()
    table = Table("list", "created", "budget", "spent", "treated", "held out", "expected profit", "matures",
                  "retained (treated / held out)", title="retention lists")
    for r in lists:
        table.add_row(str(r["list_id"]), f"{r['created_at']:%Y-%m-%d %H:%M}", f"{r['budget']:.2f}",
                      f"{r['spent']:.2f}", str(r["treated"]), str(r["held_out"]), f"{r['expected_profit']:.2f}",
                      f"{r['matures_at']:%Y-%m-%d}",
                      f"{r['treated_retained']} / {r['held_out_retained']}" if r["measured_at"] else "not yet")
    console.print(table)
    table = Table("action", "tier", "treated", "held out", "churn treated", "churn held out", "win-back (95 % CI)",
                  "p", "assumed", "in use", title="win-back rates: measured vs assumed")
    for r in effects:
        measured = (f"{r['win_back_rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
                    if r["win_back_rate"] is not None and r["ci_low"] is not None else "-")
        table.add_row(r["action"], r["tier"], str(r["treated"]), str(r["held_out"]),
                      f"{r['churn_treated']:.3f}" if r["churn_treated"] is not None else "-",
                      f"{r['churn_held_out']:.3f}" if r["churn_held_out"] is not None else "-", measured,
                      f"{r['p_value']:.4f}" if r["p_value"] is not None else "-",
                      f"{r['assumed_rate']:.3f}" if r["assumed_rate"] is not None else "-",
                      f"{r['rate_in_use']:.3f} ({r['source']})" if r["rate_in_use"] is not None else "-")
    console.print(table)


@dnc_app.command("add")
def dnc_add(user_id: str, reason: Annotated[str, typer.Option(help="why (kept with the entry)")] = "",
            tenant: TenantOpt = None) -> None:
    """SELECT reco.add_do_not_contact(USER_ID, reason)."""
    with db.connect() as conn:
        added = conn.execute("SELECT reco.add_do_not_contact(%s, %s, %s) AS a", (user_id, reason, tenant)).fetchone()
    console.print(f"{user_id}: " + ("added to the do-not-contact list" if added["a"] else "already on it"))


@dnc_app.command("remove")
def dnc_remove(user_id: str, tenant: TenantOpt = None) -> None:
    """SELECT reco.remove_do_not_contact(USER_ID)."""
    with db.connect() as conn:
        gone = conn.execute("SELECT reco.remove_do_not_contact(%s, %s) AS r", (user_id, tenant)).fetchone()
    console.print(f"{user_id}: " + ("removed from the do-not-contact list" if gone["r"] else "was not on it"))


@actions_app.command("set")
def actions_set(action: str, cost: Annotated[float, typer.Option(help="cost per contact")],
                win_back_rate: Annotated[float, typer.Option(
                    help="assumed share of would-be churners won back (0..1), until measured")],
                tenant: TenantOpt = None) -> None:
    """SELECT reco.set_retention_action(ACTION, cost, win_back_rate)."""
    with db.connect() as conn:
        out = conn.execute("SELECT reco.set_retention_action(%s, %s::numeric, %s, %s) AS a",
                           (action, str(cost), win_back_rate, tenant)).fetchone()["a"]
    console.print_json(json.dumps(out))


@actions_app.command("remove")
def actions_remove(action: str, tenant: TenantOpt = None) -> None:
    """SELECT reco.remove_retention_action(ACTION)."""
    with db.connect() as conn:
        out = conn.execute("SELECT reco.remove_retention_action(%s, %s) AS a", (action, tenant)).fetchone()["a"]
    console.print_json(json.dumps(out))


@actions_app.command("list")
def actions_list(tenant: TenantOpt = None) -> None:
    """SELECT reco.retention_actions()."""
    with db.connect() as conn:
        out = conn.execute("SELECT reco.retention_actions(%s) AS a", (tenant,)).fetchone()["a"]
    console.print_json(json.dumps(out))


@retention_app.command("bench")
def bench(users: Annotated[int, typer.Option(help="generated users with planted churn")] = 20_000,
          rounds: Annotated[int, typer.Option(help="list rounds simulated")] = 6,
          seed: int = 7,
          budget: Annotated[float, typer.Option(help="each list's budget for paid actions")] = 1000.0,
          out: Annotated[Path | None, typer.Option(help="also write the numbers as JSON here")] = None,
          tenant: TenantOpt = None) -> None:
    """The loop on generated data with planted churn (app/tools/bench_retention.py): measured vs planted win-back rates,
    uplift-aware vs assumed-rate lists' realised profit, precision at the list's threshold, the truth's AUC."""
    from app.tools.bench_retention import print_result, run

    result = run(users=users, rounds=rounds, seed=seed, tenant=tenant or "retention-bench", budget=budget,
                 log=console.print)
    print_result(result, console.print)
    if out:
        out.write_text(json.dumps(result, indent=2, default=str))
