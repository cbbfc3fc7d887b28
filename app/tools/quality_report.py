"""The report of `reco bench quality`: its results as the lines the command prints."""

from __future__ import annotations

from app.tools.quality import POP_CHECK, RECBOLE_ROWS, RECBOLE_SOURCE, TARGET_LIFT, Measured, MovieLensResult
from app.tools.quality_data import K
from app.tools.quality_generated import GENERATED, GeneratedResult


def _row(label: str, ndcg: float, hit: float, mrr: float | None = None, note: str = "") -> str:
    return (f"{label:<40} {ndcg:7.4f} {hit:7.4f} " + (f"{mrr:7.4f}" if mrr is not None else " " * 7)
            + (f"  {note}" if note else "")).rstrip()


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} %"


def movielens_lines(r: MovieLensResult) -> list[str]:
    lines = [f"MovieLens-100K, RecBole 1.2.1's split (LS valid_and_test, order TO, full ranking); "
             f"{K} per user, train and valid items never recommended; RecBole rows: {RECBOLE_SOURCE}",
             f"{'model':<40} {'NDCG@10':>7} {'Hit@10':>7} {'MRR@10':>7}"]
    lines += [_row(m, n, h) for m, n, h in RECBOLE_ROWS]
    p = r.popularity
    lines.append(_row("popularity (plain count)", p.ndcg, p.hit, p.mrr, "computed here"))

    def block(title: str, measured: Measured) -> None:
        for model, s in measured.scores.items():
            label = f"{title}: served (hybrid)" if model == "hybrid" else f"{title}: {model} alone"
            lines.append(_row(label, s.ndcg, s.hit, s.mrr))

    block("pgreco defaults", r.defaults)
    t = r.tuned
    if t and t.measured:
        block("pgreco tuned", t.measured)
    sz = r.sizes
    lines.append("")
    lines.append(f"split: {sz['users']:,} users, train {sz['train']:,} / valid {sz['valid']:,} / test {sz['test']:,} "
                 f"interactions; plain popularity {p.ndcg:.4f} / {p.hit:.4f} vs RecBole Pop "
                 f"{POP_CHECK[0]:.4f} / {POP_CHECK[1]:.4f}: " + ("check passed" if r.split_ok else "CHECK FAILED"))
    if t:
        trials = f"{t.trials} trial{'s' if t.trials != 1 else ''}, {t.seconds:.1f} s"
        if t.applied:
            settings = ", ".join(f"{k}={v}" for k, v in t.settings.items())
            lines.append(f"tuned settings applied ({trials}): {settings}")
        else:
            lines.append(f"tuning: nothing applied ({trials}): {t.message}")
    load = ("reused the loaded data" + (f" (settings reset: {', '.join(r.reset)})" if r.reset else "")
            if r.load is None else
            f"load {r.load.seconds:.1f} s ({r.load.features:,} features, {r.load.users:,} users, "
            f"{r.load.events:,} events: {r.load.events_per_second:,.0f} events/s)")
    lat = r.defaults.latency()
    timing = (f"timings: wheel {'downloaded' if r.downloaded else 'cached'} + read {r.fetch_seconds:.1f} s; {load}; "
              f"jobs {r.jobs_seconds:.1f} s")
    if t:
        timing += f"; tune {t.seconds:.1f} s" + (f", jobs again {t.jobs_seconds:.1f} s" if t.applied else "")
    lines.append(timing)
    lines.append(f"recommend_features(u, 11): {lat['calls']:,} calls, median {lat['median_ms']:.2f} ms, "
                 f"p99 {lat['p99_ms']:.2f} ms per call (client-side, one connection, incl. the round trip)")
    for label, timed in (("defaults", r.in_database), ("tuned", t.in_database if t else None)):
        if timed is not None:
            lines.append(f"recommend_features(u, 10) in the database, {label}, {len(timed.ms):,} calls of random "
                         f"test users: {timed.line()}")
    return lines


def generated_lines(g: GeneratedResult) -> list[str]:
    lines = [f"Generated data (demo generator: {GENERATED['users']:,} users, {GENERATED['features']} features, "
             f"{GENERATED['days']} days, seed {GENERATED['seed']}), the project's offline evaluation "
             f"(jobs.evaluate, every eligible user)",
             f"{'model':<40} {'NDCG@10':>7} {'Hit@10':>7} {'MRR@10':>7}"]
    for model, s in g.scores.items():
        lines.append(_row(model, s["ndcg"], s["hit_rate"], s["mrr"]))
    pop_lift = g.lift("popularity")
    above = g.above_hybrid()
    lines.append(f"{g.users:,} users held out, evaluation {g.seconds:.1f} s, jobs {g.jobs_seconds:.1f} s"
                 + (f", import {g.import_seconds:.1f} s" if g.import_seconds is not None else ", data reused"))
    lines.append(f"hybrid NDCG@10 vs the popularity baseline (most popular overall) {_pct(g.lift('baseline'))} "
                 f"(target >= {_pct(TARGET_LIFT - 1)}: {'met' if g.lift_met else 'NOT met'}); "
                 f"vs the segment-popularity component {_pct(pop_lift)}")
    c = g.ceiling
    if c and c.get("ndcg"):
        share = ", ".join(f"{m} {100 * g.scores[m]['ndcg'] / c['ndcg']:.0f} %"
                          for m in ("hybrid", "popularity", "baseline") if m in g.scores)
        lines.append(f"ceiling: the generator's own choice rule, knowing each user's hidden taste "
                     f"({c['users']:,} users): NDCG@10 {c['ndcg']:.4f}, Hit@10 {c['hit_rate']:.4f}, "
                     f"MRR@10 {c['mrr']:.4f}; share of it: {share}")
    lines.append("components above the hybrid: " + (", ".join(above) if above else "none")
                 + f" (target: none: {'met' if not above else 'NOT met'})")
    return lines
