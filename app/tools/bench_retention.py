"""The retention loop on generated data with planted churn (`reco retention bench`; `reco bench churn` may call
``run`` and ``print_result``).

Two tenants hold the same generated users (app/tools/churn_sim.py: hazard by plan and segment, the disengage-fade-leave
process, the planted win-back rates per action and tier). Every round (15 days apart, longer than the retention
window, so each list has matured before the next):

1. each user's state is drawn afresh from the planted process (engaged, or fading since some days) and scored
   with the truth's own probability (an oracle score in reco.churn_scores: the churn model is another module's;
   with it, its scores replace the oracle's);
2. both tenants draw their list through the product (reco.retention_list at the round's instant, p_at): the "loop"
   tenant uses measured win-back rates once significant, the "assumed" tenant never (retention_min_held_out set
   out of reach);
3. outcomes come from the truth with common random numbers for both tenants: a user leaves with the planted
   probability, unless treated with action a in tier t and won back (planted WIN_BACK[a][t]); held-out users get
   nothing. A user who stays has an event within the window, so the product measures them as retained.

It prints the loop's measured win-back rates against the planted ones (95 % interval), the realised profit of
the uplift-aware lists against the assumed-rate lists, the precision of the list at its threshold and the
truth's own AUC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from psycopg.types.json import Jsonb

from app import db
from app.tools import churn_sim
from app.tools.demodata import BAND_P, INDUSTRY_P, SIZE_P

ROUND_DAYS = 15


def _population(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    industry = rng.choice(len(INDUSTRY_P), size=n, p=INDUSTRY_P)
    size = rng.choice(len(SIZE_P), size=n, p=SIZE_P)
    band = rng.choice(len(BAND_P), size=n, p=BAND_P)
    paid = rng.random(n) < np.clip(0.15 + 0.12 * size + 0.1 * band, 0, 0.9)
    h = churn_sim.hazard(rng, paid.astype(float), band, size, industry, base=churn_sim.BASE_HAZARD * 4)
    # payments of the last 30 days: a plan and overage for paid users, a credit pack for some free ones
    pay = np.where(paid, rng.choice([12.0, 39.0, 99.0], n, p=[0.5, 0.35, 0.15]) * rng.lognormal(0.2, 0.4, n),
                   np.where(rng.random(n) < 0.25, rng.lognormal(2.3, 0.5, n), 0.0))
    return {"hazard": h, "value": np.round(0.6 * pay, 2), "paid": paid}


def _state(rng: np.random.Generator, h: np.ndarray) -> np.ndarray:
    """Each user's fading days at a round (NaN: engaged): fading with about the steady-state share h × mean fade
    length, since a uniform number of days up to twice the mean length."""
    fading = rng.random(len(h)) < np.minimum(h * churn_sim.FADE_DAYS / (1 + h * churn_sim.FADE_DAYS), 0.9)
    return np.where(fading, rng.uniform(0, 2 * churn_sim.FADE_DAYS, len(h)), np.nan)


def _tenant(conn, slug: str, n: int, value: np.ndarray, settings: dict[str, Any]) -> tuple[int, np.ndarray, int]:
    conn.execute("SELECT reco.drop_tenant(%s) WHERE EXISTS (SELECT 1 FROM reco.tenants WHERE slug = %s)",
                 (slug, slug))
    tid = conn.execute("SELECT reco.create_tenant(%s) AS t", (slug,)).fetchone()["t"]
    for lo in range(0, n, 5000):
        conn.execute("SELECT reco.upsert_users(%s, %s)", (Jsonb(
            [{"user_id": f"U{i}", "attributes": {"value": float(value[i])}} for i in range(lo, min(n, lo + 5000))]),
            slug))
    conn.execute("SELECT reco.upsert_features(%s, %s)", (Jsonb([{"feature_id": "app"}]), slug))
    for k, v in {"retention_value_attribute": "value", **settings}.items():
        conn.execute("SELECT reco.set_setting(%s, %s, %s)", (k, Jsonb(v), slug))
    keys = conn.execute("SELECT user_id, user_key FROM reco.users WHERE tenant_id = %s", (tid,)).fetchall()
    key_of = np.zeros(n, dtype=np.int64)
    for r in keys:
        key_of[int(r["user_id"][1:])] = r["user_key"]
    fkey = conn.execute("SELECT feature_key FROM reco.features WHERE tenant_id = %s", (tid,)).fetchone()["feature_key"]
    return tid, key_of, fkey


def run(users: int = 20_000, rounds: int = 6, seed: int = 7, tenant: str = "retention-bench",
        budget: float = 1000.0, log: Callable[[str], None] = print) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    pop = _population(rng, users)
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = now - timedelta(days=ROUND_DAYS * (rounds + 1))
    arms = {"loop": {}, "assumed": {"retention_min_held_out": 1_000_000}}
    out: dict[str, Any] = {"users": users, "rounds": rounds, "seed": seed, "budget": budget,
                           "score": "oracle (the planted truth's probability; the churn model's scores replace it)",
                           "planted": churn_sim.WIN_BACK, "per_round": []}
    all_p, all_y = [], []
    hits = {"paid": [0, 0], "high_tier": [0, 0], "list": [0, 0]}  # would-be churners, users
    with db.connect(autocommit=True) as conn:
        conn.execute("SELECT reco.ensure_event_partitions(%s, %s)", (start, now))
        ten = {arm: _tenant(conn, f"{tenant}-{arm}", users, pop["value"], s) for arm, s in arms.items()}
        log(f"{users:,} users in tenants {', '.join(f'{tenant}-{a}' for a in arms)}; {rounds} rounds of lists")
        for r in range(rounds):
            at = start + timedelta(days=ROUND_DAYS * r)
            p = churn_sim.p_true(pop["hazard"], _state(rng, pop["hazard"]))
            tier = churn_sim.tier_of(p)
            leaves = rng.random(users) < p  # common random numbers: the same users would leave in both arms
            u_win = rng.random(users)
            all_p.append(p)
            all_y.append(leaves)
            row: dict[str, Any] = {"round": r + 1, "at": at.date().isoformat()}
            for arm, (tid, key_of, fkey) in ten.items():
                conn.execute("""INSERT INTO reco.churn_scores (tenant_id, as_of, user_key, model_id, probability, tier)
                                SELECT %s, %s::date, k, 0, p, t FROM unnest(%s::int[], %s::float8[], %s::text[])
                                AS x(k, p, t)""", (tid, at.date(), key_of.tolist(), p.tolist(), tier.tolist()))
                lid = conn.execute("SELECT max(list_id) AS l FROM reco.retention_list(%s::numeric, NULL, %s, %s)",
                                   (str(budget), f"{tenant}-{arm}", at)).fetchone()["l"]
                rows = conn.execute("""SELECT u.user_id, c.action, c.tier, c.cost, c.value, c.held_out
                                       FROM reco.retention_contacts c
                                       JOIN reco.users u ON u.tenant_id = c.tenant_id AND u.user_key = c.user_key
                                       WHERE c.list_id = %s""", (lid,)).fetchall()
                idx = np.array([int(x["user_id"][1:]) for x in rows], dtype=np.int64)
                held = np.array([x["held_out"] for x in rows], dtype=bool)
                cost = np.array([float(x["cost"]) for x in rows])
                rate = np.array([churn_sim.WIN_BACK.get(x["action"], {}).get(x["tier"], 0.0) for x in rows])
                won = np.zeros(users, dtype=bool)
                won[idx[~held]] = leaves[idx[~held]] & (u_win[idx[~held]] < rate[~held])
                stays = ~leaves | won
                profit = float((won[idx[~held]] * pop["value"][idx[~held]]).sum() - cost[~held].sum())
                back = np.flatnonzero(stays)
                conn.execute("""INSERT INTO reco.events (tenant_id, occurred_at, user_key, feature_key, event_id, kind,
                                                         success)
                                SELECT %s, %s, k, %s, 'r' || %s || '-' || k, 'use', true FROM unnest(%s::int[]) AS k""",
                             (tid, at + timedelta(days=1), fkey, lid, key_of[back].tolist()))
                row[arm] = {"list_id": lid, "treated": int((~held).sum()), "held_out": int(held.sum()),
                            "spent": round(float(cost[~held].sum()), 2), "won_back": int(won.sum()),
                            "realised_profit": round(profit, 2)}
                if arm == "loop":
                    for part, mask in (("paid", cost > 0), ("high_tier", p[idx] >= churn_sim.TIER_CUTS[0]),
                                       ("list", np.ones(len(idx), dtype=bool))):
                        hits[part][0] += int(leaves[idx[mask]].sum())
                        hits[part][1] += int(mask.sum())
            out["per_round"].append(row)
            log(f"round {r + 1} ({row['at']}): " + "; ".join(
                f"{arm} treated {row[arm]['treated']:,}, spent {row[arm]['spent']:,.2f}, won back "
                f"{row[arm]['won_back']:,}, profit {row[arm]['realised_profit']:,.2f}" for arm in arms))
        end = start + timedelta(days=ROUND_DAYS * rounds)
        tid = ten["loop"][0]
        conn.execute("SELECT reco.measure_retention_lists(%s, %s)", (f"{tenant}-loop", end))
        effects = conn.execute("SELECT * FROM reco.retention_effects(%s, %s) WHERE lists > 0 ORDER BY action, tier",
                               (f"{tenant}-loop", end)).fetchall()
        # Qini and uplift@k once retention_qini_min_lists (3) lists have matured
        uplift = (conn.execute("SELECT * FROM reco.retention_uplift(%s)", (f"{tenant}-loop",)).fetchall()
                  if rounds >= 3 else [])
    out["uplift_at_k"] = [{"top_share": u["top_share"], "uplift": u["uplift"], "incremental": u["incremental"],
                           "qini": u["qini"]} for u in uplift]
    out["measured"] = [{
        "action": e["action"], "tier": e["tier"], "treated": e["treated"], "held_out": e["held_out"],
        "measured": e["win_back_rate"], "ci_low": e["ci_low"], "ci_high": e["ci_high"], "p_value": e["p_value"],
        "significant": e["significant"], "planted": churn_sim.WIN_BACK.get(e["action"], {}).get(e["tier"]),
        "covered": (None if e["ci_low"] is None or e["win_back_rate"] is None
                    else e["ci_low"] <= churn_sim.WIN_BACK[e["action"]][e["tier"]] <= e["ci_high"])}
        for e in effects]
    later = out["per_round"][1:]
    out["profit"] = {arm: round(sum(x[arm]["realised_profit"] for x in out["per_round"]), 2) for arm in arms}
    out["profit_after_round_1"] = {arm: round(sum(x[arm]["realised_profit"] for x in later), 2) for arm in arms}
    out["precision"] = {part: (h / n if n else None) for part, (h, n) in hits.items()}
    out["precision_users"] = {part: n for part, (_, n) in hits.items()}
    out["truth_auc"] = churn_sim.auc(np.concatenate(all_p), np.concatenate(all_y))
    out["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return out


def print_result(res: dict[str, Any], say: Callable[[str], None] = print) -> None:
    say(f"\nretention loop on {res['users']:,} generated users, {res['rounds']} lists of budget {res['budget']:,.0f} "
        f"(scores: {res['score']})")
    say("\nwin-back rates: measured by the loop's holdouts vs planted (95 % interval)")
    say(f"{'action':8} {'tier':7} {'treated':>8} {'held out':>9} {'measured':>9} {'interval':>19} "
        f"{'planted':>8}  in CI")
    for m in res["measured"]:
        meas = f"{m['measured']:.3f}" if m["measured"] is not None else "-"
        ci = f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if m["ci_low"] is not None else "-"
        say(f"{m['action']:8} {m['tier']:7} {m['treated']:>8,} {m['held_out']:>9,} {meas:>9} {ci:>19} "
            f"{m['planted']:>8.3f}  {'-' if m['covered'] is None else 'yes' if m['covered'] else 'NO'}")
    say("\nrealised profit (won-back users' value − cost of the treated), all rounds / after the first list")
    for arm, label in (("loop", "uplift-aware (measured rates)"), ("assumed", "assumed rates only")):
        say(f"  {label:32} {res['profit'][arm]:>12,.2f} {res['profit_after_round_1'][arm]:>12,.2f}")
    say("\nprecision (share of the list's users who would have left without a contact), loop lists:")
    for part, label in (("high_tier", f"at the high-tier threshold (p >= {churn_sim.TIER_CUTS[0]:.2f})"),
                        ("paid", "the budgeted picks (paid actions)"), ("list", "the whole list (with free actions)")):
        v = res["precision"][part]
        say(f"  {label:45} {'-' if v is None else f'{v:.3f}':>6}  ({res['precision_users'][part]:,} users)")
    if res["uplift_at_k"]:
        say(f"\nuplift@k over the loop's matured lists (Qini {res['uplift_at_k'][0]['qini']:.4f}):")
        say("  " + "  ".join(f"{u['top_share']:.0%} {u['uplift']:+.3f}" for u in res["uplift_at_k"]
                             if u["uplift"] is not None))
    say(f"the planted truth's own AUC: {res['truth_auc']:.4f}")
