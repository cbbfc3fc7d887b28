"""`reco tune` and `reco evaluate`: the tenant's settings searched and scored on a holdout."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app import db
from app.cli.common import (
    TenantOpt,
    console,
    print_json,
    print_table,
    progress_bars,
)
from app.cli.jobs import run_jobs
from jobs.components import TUNED

commands = typer.Typer()


@commands.command()
def tune(
    users: Annotated[int | None, typer.Option(
        help="held-out users (0 = every eligible user; default: setting evaluation_users)")] = None,
    apply_: Annotated[bool, typer.Option("--apply/--no-apply", help="apply the best settings when they win")] = True,
    jobs_: Annotated[bool, typer.Option("--jobs/--no-jobs", help="run the jobs after applying")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    tenant: TenantOpt = None,
) -> None:
    """Search the tenant's settings (neighbour model and K, τ, weights, seen handling, MMR λ) on a
    holdout of its own data; apply the best when it beats the current settings by more than the noise."""
    from jobs.tune import tune as run_tune

    url = db.database_url()
    with progress_bars() as bar:
        task = bar.add_task("tune", total=None)

        def progress(step: str, done: int, total: int) -> None:
            from rich.markup import escape

            bar.update(task, description=escape(f"tune: {step}"))

        result = run_tune(url, tenant, users=users, apply=apply_, progress=None if as_json else progress)
        bar.update(task, total=1, completed=1, description="tune done")
    if as_json:
        print_json({"applied": result.applied, "settings": result.settings, "trials": result.trials,
                     "seconds": round(result.seconds, 1), "summary": result.summary,
                     "ease": {"inverses": result.ease_inverses, "seconds": round(result.ease_seconds, 1)}})
    else:
        console.print(f"{result.message}; {result.seconds:.0f} s")
        if result.ease_note:
            console.print(f"{result.ease_note} (one per λ and holdout)")
        console.print("every trial: SELECT * FROM reco.tune_trials ORDER BY run_id DESC;")
        if result.summary.get("tune"):
            console.print("what each stage chose and applied: SELECT * FROM reco.tune_decisions "
                          f"WHERE tune = '{result.summary['tune']}' ORDER BY position;", highlight=False)
    if result.applied and jobs_:
        run_jobs("all", tenant, url=url)


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------

MODEL_NOTES = {"hybrid": "every component, weights from reco.settings", "itemcf": "ItemCF alone",
               "usercf": "UserCF alone", "prior": "cohort prior alone", "popularity": "segment popularity alone",
               "baseline": "most popular features overall (not personalised)",
               "hybrid_explore": "the hybrid as served: with Thompson exploration for users with few interactions"}


@commands.command()
def evaluate(
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="list length K")] = 10,
    users: Annotated[int | None, typer.Option(
        help="held-out users (0 = every eligible user; default: setting evaluation_users, 5000 for --grid)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    grid_: Annotated[bool, typer.Option("--grid", help="try a small grid of weights, τ and MMR λ")] = False,
    apply_: Annotated[bool, typer.Option("--apply", help="with --grid: write the best settings")] = False,
    workers: Annotated[int, typer.Option(min=1, max=16, help="connections ranking in parallel")] = 2,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=JSON: a setting for this evaluation only, e.g. --set mmr_lambda=1 (repeatable)")] = None,
    tenant: TenantOpt = None,
) -> None:
    """Leave-one-out evaluation (by time) of the hybrid, each component and a popularity baseline."""
    from jobs import evaluate as ev

    url = db.database_url()
    if apply_ and not grid_:
        raise typer.BadParameter("--apply goes with --grid")
    overrides: dict = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes KEY=JSON, got {item!r}")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value  # a bare word: a JSON string
    with progress_bars() as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, done: int, total: int) -> None:
            if as_json:
                return
            if not total:  # a step of preparing the evaluation scope
                if "prepare" not in tasks:
                    tasks["prepare"] = bar.add_task("prepare", total=None)
                bar.update(tasks["prepare"], description=f"prepare: {step}")
                return
            if step not in tasks:
                if "prepare" in tasks:
                    bar.update(tasks["prepare"], description="prepared", total=1, completed=1)
                tasks[step] = bar.add_task(f"rank: {step}", total=total)
            bar.update(tasks[step], completed=done, total=total)

        if grid_:
            points = ev.grid(url, tenant, k=k, users=5000 if users is None else users, workers=workers,
                             progress=progress)
        else:
            result = ev.evaluate(url, tenant, k=k, users=users, settings=overrides, workers=workers,
                                 progress=progress)
    no_users = ("no eligible users: a user needs two or more features (the most recently adopted one "
                "active and allowed by the user's plan) to have one held out; nothing to score")
    if grid_:
        if not points:
            if as_json:
                print_json([])
            else:
                console.print(no_users)
            return
        if as_json:
            print_json([{"settings": p.settings, "hit_rate": p.hit_rate, "mrr": p.mrr, "ndcg": p.ndcg,
                          "run_id": p.run_id} for p in points])
        else:
            from rich.table import Table

            table = Table("#", "τ days", "λ", "itemcf", "usercf", "prior", "popularity",
                          f"hit@{k}", f"ndcg@{k}", "run")
            for i, p in enumerate(points[:15], 1):
                st = p.settings
                table.add_row(str(i), f"{st['decay_tau_days']:g}", f"{st['mmr_lambda']:g}",
                              *(f"{st['weight_' + n]:g}" for n in TUNED),
                              f"{p.hit_rate:.4f}", f"{p.ndcg:.4f}", str(p.run_id))
            print_table(table)
            console.print(f"{len(points)} settings tried; stored as runs of kind 'grid' in reco.evaluation_runs")
        if apply_:
            for line in ev.apply(url, tenant, points[0].settings):
                console.print(f"applied: {line}")
        return
    if as_json:
        print_json(result.as_json())
        return
    from rich.table import Table

    table = Table("model", f"hit@{k}", f"mrr@{k}", f"ndcg@{k}", "coverage", "")
    for model, s in result.scores.items():
        table.add_row(model, f"{s['hit_rate']:.4f}", f"{s['mrr']:.4f}", f"{s['ndcg']:.4f}",
                      f"{s['coverage']:.4f}", MODEL_NOTES.get(model, ""))
    print_table(table)  # in a pipe as wide as its cells, not wrapped at 80 columns
    if "hybrid" not in result.scores:  # nobody held out: nothing was ranked
        console.print(no_users)
        console.print(f"stored as run {result.run_id} with 0 users ({result.seconds:.1f} s)")
        return
    hybrid = result.scores["hybrid"]["ndcg"]
    lifts = ", ".join(f"{m} {100 * (hybrid / s['ndcg'] - 1):+.1f} %" for m, s in result.scores.items()
                      if m not in ("hybrid", "hybrid_explore") and s["ndcg"] > 0)
    console.print(f"{result.users:,} users held out, {result.seconds:.1f} s; hybrid NDCG@{k} vs {lifts}")
    console.print(f"stored as run {result.run_id}: SELECT * FROM reco.evaluations WHERE run_id = {result.run_id};")
