"""`reco tune`: the tune job's search (sql/065_tune.sql) walked from Python, so that the trials
that need numpy run too: EASE neighbour weights (jobs/ease.py) and, for catalogs above 64
features, the SVD factors of the evaluation scope (jobs/svd.py). The stages, their candidates,
a trial, keeping a stage's best and the final decision are the SQL functions the SQL-only
reco.tune uses; this module only adds the numpy steps between them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobs import logged_run, mark_fresh, runner_url, tenant_slugs, vacuum_rewritten
from jobs.ease import EaseCache, write_ease_weights
from jobs.evaluate import scope as evaluation_scope
from jobs.svd import DIM

Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass
class TuneResult:
    applied: bool
    settings: dict          # what was applied (or would have been, with apply=False)
    trials: int
    seconds: float
    message: str
    summary: dict = field(default_factory=dict)  # what reco.tune_decide returned
    ease_inverses: int = 0  # EASE inverses computed (one per λ and scope, whatever the number of K tried)
    ease_seconds: float = 0.0  # spent on them and their top K

    @property
    def ease_note(self) -> str:
        """What EASE cost the tune, for `reco tune` and the job's log ('' when it computed none)."""
        return f"EASE: {self.ease_inverses} inverse(s), {self.ease_seconds:.1f} s" if self.ease_inverses else ""


def _scalar(conn: psycopg.Connection, query: str, params: tuple = ()):
    return next(iter(conn.execute(query, params).fetchone().values()))


def tune(url: str, tenant: str | None, *, users: int | None = None, apply: bool = True,
         progress: Progress | None = None, log_run: bool = True) -> TuneResult:
    """Search the tenant's settings on a holdout of its own data, EASE included; apply the best when
    it beats the current settings by more than the noise (setting tune_min_gain), or the best
    component alone when it beats that hybrid (the floor). Logged in reco.job_runs as job tune unless
    ``log_run`` is false (the Python runner: reco.run_job logs it)."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        if not log_run:
            return _search(conn, url, tenant, users, apply, progress)
        with logged_run(conn, "tune", tenant) as run:
            result = _search(conn, url, tenant, users, apply, progress)
            run.rows, run.message = result.trials, result.message
        return result


def _search(conn: psycopg.Connection, url: str, tenant: str | None, users: int | None, apply: bool,
            progress: Progress | None) -> TuneResult:
    """The search of :func:`tune` on ``conn``: the stages, the floor trial, the decision."""
    started = time.perf_counter()
    if progress:
        conn.add_notice_handler(lambda d: (d.message_primary or "").startswith("progress: ")
                                and progress(d.message_primary.split(": ", 2)[-1], 0, 0))
    tid = _scalar(conn, "SELECT reco.tenant_id(%s)", (tenant,))
    big = _scalar(conn, "SELECT count(*) > %s FROM reco.features WHERE tenant_id = %s AND active", (DIM, tid))
    conn.execute("SELECT reco.tune_begin()")
    # the scope as the evaluation builds it: its own SVD factors and, for a tenant on EASE, its
    # EASE weights, so the baseline is measured with the model the tenant really serves
    with evaluation_scope(url, tenant, users, seed="pgreco-tune") as sc, ExitStack() as folds:
        if not sc.users:
            return TuneResult(False, {}, 0, time.perf_counter() - started,
                              "no eligible users: nothing to tune on")
        scope, slug = sc.tenant_id, sc.slug
        steps = ["svd"] if big else []
        mark_fresh(conn, steps)  # the trials that rebuild user vectors use the scope's SVD factors
        name = f"{tid}-py-{int(time.time() * 1e6)}"
        fold = None  # the second fold's scope, made when a stage is inconclusive
        # one EASE inverse per λ and scope: the trials at other K (and the stage's best, restored)
        # take their columns' top K from it
        cache = EaseCache(k_max=_scalar(conn, """SELECT coalesce(max((c ->> 'neighbors_k')::int), 0)
                                                FROM reco.tune_plan('model') AS c
                                                WHERE c ->> 'neighbor_model' = 'ease'"""))
        baseline = _scalar(conn, "SELECT reco.tune_trial(%s, %s, 'baseline', '{}')", (scope, name))
        skipped: list[str] = []
        for stage in _scalar(conn, "SELECT reco.tune_stages()"):
            for trial in [r["c"] for r in conn.execute("SELECT reco.tune_plan(%s) AS c", (stage,))]:
                if _scalar(conn, "SELECT reco.tune_needs_python(%s)", (Jsonb(trial),)):
                    full = _scalar(conn, "SELECT reco.tune_trial_settings(%s, %s, %s)", (name, stage, Jsonb(trial)))
                    if progress:  # the SQL trial names itself after the numpy steps
                        progress(f"{stage}: {json.dumps(trial)}: EASE weights (numpy)", 0, 0)
                    reason = _ease(conn, scope, slug, full, steps, cache)
                    if reason:
                        skipped.append(f"{stage} {trial}: {reason}")
                        continue
                conn.execute("SELECT reco.tune_trial(%s, %s, %s, %s)", (scope, name, stage, Jsonb(trial)))
                # each trial rewrites the scope's neighbours: vacuumed, so 25 trials do not leave
                # the table and its indexes (which the tenant's requests read) 25 times their size
                vacuum_rewritten(conn, "feature_neighbors")
            confirm = None
            pending = conn.execute("SELECT * FROM reco.tune_pending(%s, %s, %s)",
                                   (scope, name, stage)).fetchone()
            if pending and pending["confirm"]:
                # inconclusive on the first fold: the incumbent and the best again on the second
                # (made once: each user's adoption before the latest held out, the latest left out)
                if fold is None:
                    fold = folds.enter_context(evaluation_scope(url, tenant, users, seed="pgreco-tune", fold=1))
                confirm = [_fold_trial(conn, fold.tenant_id, fold.slug, name, run, steps, cache)
                           for run in (pending["incumbent"], pending["best"])]
            best = _scalar(conn, "SELECT reco.tune_keep_best(%s, %s, %s, %s::bigint[])",
                           (scope, name, stage, confirm))
            if best and _scalar(conn, "SELECT reco.tune_needs_python(%s)", (Jsonb(best),)):
                _ease(conn, scope, slug, best, steps, cache)  # the SQL side cannot restore an EASE best
        # the tuned configuration again, with each component alone (the component floor)
        conn.execute("SELECT reco.tune_trial(%s, %s, 'floor', '{}')", (scope, name))
        summary = _scalar(conn, "SELECT reco.tune_decide(%s, %s, %s, %s, %s, %s)",
                          (tid, scope, name, baseline, apply, skipped))
    settings = summary.get("settings") or {}
    message = _scalar(conn, "SELECT reco.tune_message(%s)", (Jsonb(summary),))
    return TuneResult(bool(summary.get("applied")), settings, int(summary.get("trials") or 0),
                      time.perf_counter() - started, message, summary, cache.inverses,
                      cache.seconds)


def _ease(conn: psycopg.Connection, scope: int, slug: str, trial: dict, steps: list[str],
          cache: EaseCache | None = None) -> str | None:
    """Set an EASE trial's settings in the scope and rebuild its neighbours with numpy; a reason
    when it cannot run (catalog above ease_max_features)."""
    for key, value in trial.items():
        conn.execute("SELECT reco.set_setting(%s, %s, %s)", (key, Jsonb(value), slug))
    try:
        write_ease_weights(conn, slug, cache)
    except ValueError as exc:  # jobs.ease.EaseTooLarge
        conn.execute("SELECT reco.reset_setting('neighbor_model', %s)", (slug,))
        conn.execute("SELECT reco.job_feature_neighbors(%s::int)", (scope,))
        return str(exc)
    mark_fresh(conn, [*steps, "ease"])
    conn.execute("SELECT reco.job_feature_neighbors(%s::int)", (scope,))
    return None


def _fold_trial(conn: psycopg.Connection, scope: int, slug: str, name: str, run: int, steps: list[str],
                cache: EaseCache | None = None) -> int:
    """Measure trial ``run``'s settings (every setting the tune searches) on the second fold's scope;
    an EASE model's weights from numpy first. Returns the fold's run id."""
    full = _scalar(conn, "SELECT reco.tune_full_settings(%s)", (run,))
    if _scalar(conn, "SELECT reco.tune_needs_python(%s)", (Jsonb(full),)):
        # the rest first (a τ rebuilds the interactions), then the model stage's settings by numpy
        model_keys = {r["k"] for r in conn.execute(
            "SELECT DISTINCT jsonb_object_keys(c) AS k FROM reco.tune_plan('model') AS c")}
        conn.execute("SELECT reco.tune_restore(%s, %s)",
                     (scope, Jsonb({k: v for k, v in full.items() if k not in model_keys})))
        _ease(conn, scope, slug, {k: v for k, v in full.items() if k in model_keys}, steps, cache)
    return _scalar(conn, "SELECT reco.tune_trial(%s, %s, 'confirm', %s)", (scope, f"{name}/fold1", Jsonb(full)))


def tune_for_runner(conn: psycopg.Connection, tenant: str | None) -> int:
    """The tune job's numpy step (jobs.runner.PYTHON_STEPS): the full search for the tenant (or every
    tenant), its outcome left in the session for the SQL job body to log."""
    url = runner_url(conn)
    slugs = tenant_slugs(conn, tenant)
    notes = []
    for slug in slugs:
        result = tune(url, slug, log_run=False)
        notes.append(f"[{slug}] {result.message}" + (f"; {result.ease_note}" if result.ease_note else ""))
    conn.execute("SELECT set_config('reco.tune_message', %s, false)", ("; ".join(notes),))
    return len(slugs)
