"""The demo generator's second shape, "long-tail" (`reco generate --shape long-tail`): a large catalog with
Zipf-like popularity (app/tools/demodata.py has the SaaS shape and the files' format)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from app.tools.demodata import (
    EPOCH,
    INDUSTRIES,
    INDUSTRY_P,
    PLANS,
    SIZE_P,
    SIZES,
    _setup,
    _write_features,
    _write_plans,
    _write_users,
)

LT_CATEGORIES = ["photo", "video", "audio", "design", "writing", "data", "marketing", "sales", "support",
                 "finance", "hr", "legal", "devops", "security", "analytics", "commerce", "education",
                 "health", "travel", "gaming"]
LT_ADJECTIVES = ["quick", "smart", "bulk", "auto", "live", "deep", "pro", "lite", "instant", "secure",
                 "shared", "guided", "custom", "batch", "visual", "adaptive", "cloud", "offline", "precise",
                 "simple"]
LT_NOUNS = ["editor", "planner", "tracker", "builder", "checker", "converter", "scheduler", "dashboard",
            "assistant", "importer", "exporter", "inspector", "generator", "optimizer", "monitor",
            "formatter", "mixer", "scanner", "composer", "reviewer"]
LT_THEMES = ["templates", "reports", "teams", "clients", "invoices", "campaigns", "pipelines", "assets",
             "schedules", "forms", "alerts", "backups", "portfolios", "tickets", "playlists", "lessons",
             "bookings", "catalogs", "surveys", "contracts"]


def _long_tail_catalog(n: int, rng: np.random.Generator) -> dict:
    """n items in clusters (themes within categories): Zipf popularity within each cluster, clusters
    of Zipf-like weight; names, tags and descriptions from the cluster, so content neighbours work."""
    n_clusters = max(8, n // 60)
    ncat = len(LT_CATEGORIES)
    cluster_cat = rng.integers(0, ncat, n_clusters)
    cluster_cat[:ncat] = np.arange(min(ncat, n_clusters))  # every category has a cluster
    cluster_theme = rng.integers(0, len(LT_THEMES), n_clusters)
    # cluster sizes vary (lognormal), every cluster has at least 3 items
    size = rng.lognormal(0, 0.6, n_clusters)
    counts = 3 + rng.multinomial(n - 3 * n_clusters, size / size.sum())
    cluster = np.repeat(np.arange(n_clusters), counts)          # items sorted by cluster
    start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    within = np.arange(n) - start[cluster]                       # rank within the cluster (0 = most used)
    cluster_w = 1.0 / (rng.permutation(n_clusters) + 1.0) ** 1.1  # popularity of the clusters
    item_w = 1.0 / (within + 1.0) ** 1.4                         # within a cluster
    pop = cluster_w[cluster] * item_w * rng.lognormal(0, 0.25, n)
    # within-cluster CDFs laid end to end: cluster c occupies (c, c + 1]; searchsorted(c + u) draws in c
    w_in = item_w / np.bincount(cluster, weights=item_w)[cluster]
    before = np.concatenate(([0.0], np.cumsum(np.bincount(cluster, weights=w_in))[:-1]))
    cdf_in = cluster + np.cumsum(w_in) - before[cluster]
    # neighbours: items of the same cluster (by within-cluster popularity), one of a cluster of the category
    k_nb = 6
    nb_cluster = np.repeat(cluster[:, None], k_nb, axis=1)
    same_cat = [np.flatnonzero(cluster_cat == cluster_cat[c]) for c in range(n_clusters)]
    other = np.array([rng.choice(same_cat[c]) for c in cluster])
    nb_cluster[:, -1] = other
    neighbors = np.minimum(np.searchsorted(cdf_in, nb_cluster + rng.random((n, k_nb))), n - 1)

    cat_of = cluster_cat[cluster]
    adj = rng.integers(0, len(LT_ADJECTIVES), n)
    noun = rng.integers(0, len(LT_NOUNS), n)
    cluster_tags = rng.integers(0, len(LT_NOUNS), (n_clusters, 3))
    paid_only = rng.random(n) < 0.15
    active = rng.random(n) >= 0.02
    head = np.argsort(-pop)[: max(5, n // 100)]
    active[head] = True            # the most used items stay active
    paid_only[head[:3]] = False
    rows = []
    for i in range(n):
        c = cluster[i]
        cat = LT_CATEGORIES[cat_of[i]]
        theme = LT_THEMES[cluster_theme[c]]
        tags = "|".join([cat, f"{cat}-{theme}", *(LT_NOUNS[t] for t in cluster_tags[c][: 1 + i % 3])])
        rows.append({
            "feature_id": f"item-{i + 1}",
            "name": f"{LT_ADJECTIVES[adj[i]].title()} {theme} {LT_NOUNS[noun[i]]} {i + 1}",
            "category": cat, "tags": tags,
            "description": f"A {LT_ADJECTIVES[adj[i]]} {LT_NOUNS[noun[i]]} for {theme} in {cat}.",
            "requires_paid": bool(paid_only[i]), "active": bool(active[i])})
    return {"rows": rows, "cluster": cluster, "cluster_cat": cluster_cat, "cluster_w": cluster_w,
            "pop": pop, "cdf_in": cdf_in, "neighbors": neighbors, "paid_only": paid_only, "active": active}


def generate_long_tail(out_dir: Path, *, users: int = 10_000, features: int = 20_000, days: int = 90,
                       seed: int = 42, end: datetime | None = None,
                       progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """A catalog of many items with long-tail popularity (`reco generate --shape long-tail`).

    - items belong to clusters (a theme within a category); popularity is Zipf-like within a cluster
      and across clusters, so a few hundred items carry much of the usage and most items are used by a
      handful of users;
    - each user has tastes: a few favourite clusters (drawn by cluster weight and the industry's
      category affinity) and adopts items one after another, each next item drawn from a favourite
      cluster (45 %), next to an item already used (a neighbour of it, 35 %) or from the whole catalog
      by popularity (20 %);
    - the number of distinct items per user is lognormal (median ~135, heavy users several hundred);
      each item used is used 1 + geometric more times, each use after its adoption;
    - free users never use paid-only items, inactive items get no events.

    Files as `generate` (same columns). Deterministic for the same arguments (seed and end instant).
    """
    if features < 100:
        raise ValueError("features must be >= 100 for the long-tail shape")
    out_dir, start_s, end_s, rng = _setup(out_dir, days, seed, end)

    cat = _long_tail_catalog(features, rng)
    _write_features(out_dir / "features.csv", cat["rows"])
    _write_plans(out_dir / "plans.csv")

    industry = rng.choice(len(INDUSTRIES), size=users, p=INDUSTRY_P)
    size = rng.choice(len(SIZES), size=users, p=SIZE_P)
    # distinct items per user: lognormal, median ~135, capped by the catalog
    n_items = np.clip(np.rint(rng.lognormal(np.log(135), 0.55, users)), 20,
                      max(20, min(1500, features // 3))).astype(np.int64)
    band = np.searchsorted(np.quantile(n_items, [0.5, 0.85]), n_items, side="right")
    paid = rng.random(users) < np.clip(0.2 + 0.1 * size + 0.1 * band, 0, 0.9)
    signup = np.where(rng.random(users) < 0.35,
                      start_s - rng.integers(1, 365 * 86400, users),
                      start_s + (rng.beta(1.0, 1.6, users) * days * 86400).astype(np.int64))
    _write_users(out_dir / "users.csv", industry, size, band, paid, signup)
    # industry x category affinity: each industry leans to a few categories
    affinity = rng.gamma(0.5, 1.0, (len(INDUSTRIES), len(LT_CATEGORIES))) + 0.05

    chunk = 2000
    n_events = 0
    with (out_dir / "events.csv").open("w", newline="") as fh:
        fh.write("event_id,user_id,feature_id,occurred_at,kind,success\n")
        for lo in range(0, users, chunk):
            hi = min(users, lo + chunk)
            n = _write_long_tail_chunk(fh, rng, lo, hi, n_events, cat, industry, n_items, paid, signup,
                                       affinity, start_s, end_s)
            n_events += n
            if progress:
                progress(n)
    return {"users": users, "features": features, "plans": len(PLANS), "events": n_events}


def _write_long_tail_chunk(fh, rng, lo, hi, first_id, cat, industry, n_items, paid, signup, affinity,
                           start_s, end_s) -> int:
    m = hi - lo
    n = len(cat["pop"])
    cdf_in, neighbors = cat["cdf_in"], cat["neighbors"]
    n_clusters = len(cat["cluster_w"])
    # favourite clusters: 2-6 per user, by cluster weight x industry affinity for its category
    fav_w = cat["cluster_w"][None, :] * affinity[industry[lo:hi]][:, cat["cluster_cat"]]
    k_fav = 6
    # (Gumbel top-k: k clusters drawn without replacement in proportion to fav_w, most preferred first)
    fav = np.argsort(-(np.log(fav_w) + rng.gumbel(size=(m, n_clusters))), axis=1)[:, :k_fav]
    n_fav = rng.integers(2, k_fav + 1, m)
    taste = rng.dirichlet(np.ones(k_fav), m) * (np.arange(k_fav)[None, :] < n_fav[:, None])
    taste_cdf = np.cumsum(taste / taste.sum(axis=1, keepdims=True), axis=1)
    pop_cdf = np.cumsum(cat["pop"]) / cat["pop"].sum()
    allowed_free = cat["active"] & ~cat["paid_only"]
    user_paid = paid[lo:hi]

    want = n_items[lo:hi]
    steps = int(want.max() * 2.2) + 10
    seq = np.empty((m, steps), dtype=np.int64)
    rows = np.arange(m)
    for t in range(steps):
        mode = rng.random(m)
        fav_pick = np.minimum((rng.random(m)[:, None] > taste_cdf).sum(axis=1), k_fav - 1)
        c = fav[rows, fav_pick]
        item = np.minimum(np.searchsorted(cdf_in, c + rng.random(m)), n - 1)
        popular = mode < 0.20
        item[popular] = np.minimum(np.searchsorted(pop_cdf, rng.random(popular.sum())), n - 1)
        if t:
            near = mode >= 0.65
            prev = seq[near, rng.integers(0, t, near.sum())]
            item[near] = neighbors[prev, rng.integers(0, neighbors.shape[1], near.sum())]
        seq[:, t] = item
    # keep the first use of each allowed item, up to the user's number of items
    ok = np.where(user_paid[:, None], cat["active"][seq], allowed_free[seq])
    key = (rows[:, None] * n + seq).ravel()
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(m * steps, dtype=bool)
    keep[first] = True
    keep = keep.reshape(m, steps) & ok
    keep &= np.cumsum(keep, axis=1) <= want[:, None]
    ui, si = np.nonzero(keep)                 # row-major: per user, in adoption order
    items = seq[ui, si]
    # adoption times: spread over the user's time in the window, in sequence order
    u_start = np.minimum(np.maximum(signup[lo:hi], start_s) + rng.integers(0, 3 * 86400, m), end_s - 3600)
    span = (end_s - u_start).astype(np.float64)
    adopted = keep.sum(axis=1)
    rank = np.arange(len(ui)) - np.concatenate(([0], np.cumsum(adopted)[:-1]))[ui]
    frac = (rank + rng.random(len(ui))) / np.maximum(adopted[ui], 1)
    adopt_t = u_start[ui] + (frac ** 1.2 * span[ui] * 0.9).astype(np.int64)
    uses = rng.geometric(0.55, len(ui))        # the adoption and re-uses: 1.8 events per item on average
    total = int(uses.sum())
    ev_u = np.repeat(ui, uses)
    ev_f = np.repeat(items, uses)
    t_from = np.repeat(adopt_t, uses)
    first_use = np.zeros(total, dtype=bool)
    first_use[np.concatenate(([0], np.cumsum(uses)[:-1]))] = True
    t = np.where(first_use, t_from, t_from + (rng.random(total) * (end_s - t_from)).astype(np.int64))
    t = np.minimum(t, end_s - 1)
    ok_use = rng.random(total) < 0.8
    idx = np.lexsort((t, ev_u))
    ev_u, ev_f, t, ok_use = ev_u[idx], ev_f[idx], t[idx], ok_use[idx]
    ts = np.datetime_as_string(EPOCH + t.astype("timedelta64[s]"), unit="s")
    okstr = np.where(ok_use, "true", "false")
    ids = range(first_id + 1, first_id + total + 1)
    fh.write("".join(
        f"E{i},U{u},item-{f},{s}Z,use,{o}\n"
        for i, u, f, s, o in zip(ids, (ev_u + lo + 1).tolist(), (ev_f + 1).tolist(), ts, okstr, strict=True)))
    return total
