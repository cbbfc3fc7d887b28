"""Demo data: a SaaS photo-editing product, its users and their feature usage (`reco generate`).

The world is built so that collaborative filtering has real signal and global popularity is a
weak baseline:

- features belong to categories; a few pairs of features go together (cut-out -> batch mode,
  restore -> upscale, ...) and each feature has a "partner" it is often adopted with;
- each user has a taste (1-3 preferred categories, drawn with probabilities that depend on the
  industry, so the industry is informative but not decisive) and adopts a handful of features
  one after another, each adoption pulled towards the categories and partners of the features
  already adopted;
- adopted features are then re-used, which is where most events come from; heavy users use
  more features and use them more often;
- free users never use paid-only features; inactive features get no events;
- about 80 % of uses succeed, with per-feature rates from 65 % to 95 %.

A second shape, "long-tail" (app/tools/demodata_longtail.py: `generate_long_tail`, `reco generate --shape
long-tail`), makes a catalog of thousands of items with Zipf-like popularity, clusters of co-used items and
~135 items per user.

Output is byte-for-byte deterministic for the same arguments (seed and end instant).
Files: users.csv, features.csv, plans.csv, events.csv (their columns: docs/guides/import.md).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.tools.churn_sim import ChurnPlan

CATEGORIES = ["cut-out", "outfit-swap", "watermark", "restoration", "retouch", "generative",
              "templates", "batch", "api"]

# (feature_id, name, category, tags, description); order = rough global popularity
CATALOG = [
    ("background-removal", "Background removal", "cut-out", "cutout|ai|background",
     "Removes the background of a photo in one click."),
    ("photo-restore", "Photo restoration", "restoration", "restore|old-photo|ai",
     "Repairs scratches, tears and fading in old photos."),
    ("outfit-swap", "Outfit swap", "outfit-swap", "fashion|ai|clothes",
     "Dresses a model in another garment."),
    ("watermark-removal", "Watermark removal", "watermark", "cleanup|watermark",
     "Erases watermarks and stamps."),
    ("upscale", "Upscale 4x", "restoration", "resolution|ai|print",
     "Enlarges an image up to four times, keeping it sharp."),
    ("skin-retouch", "Skin retouch", "retouch", "portrait|beauty",
     "Smooths skin while keeping texture."),
    ("generative-fill", "Generative fill", "generative", "ai|fill|edit",
     "Fills a selected area with generated content."),
    ("batch-mode", "Batch mode", "batch", "bulk|automation",
     "Applies an edit to hundreds of images at once."),
    ("object-cutout", "Object cut-out", "cut-out", "cutout|object|selection",
     "Cuts out any object, not just the main subject."),
    ("social-templates", "Social media templates", "templates", "social|layout",
     "Ready-made layouts for posts and stories."),
    ("colorize", "Colorize", "restoration", "color|old-photo|ai",
     "Adds natural colours to black-and-white photos."),
    ("model-swap", "Model swap", "outfit-swap", "fashion|ai|model",
     "Replaces the model while keeping the garment."),
    ("logo-removal", "Logo removal", "watermark", "cleanup|logo",
     "Removes logos and brand marks."),
    ("api-access", "API access", "api", "developer|integration",
     "Every edit available over a REST API."),
    ("hair-refine", "Hair refine", "cut-out", "cutout|hair|portrait",
     "Refines cut-out edges around hair and fur."),
    ("background-generator", "Background generator", "generative", "ai|background|scene",
     "Generates a new scene behind the subject."),
    ("denoise", "Denoise", "restoration", "noise|low-light",
     "Removes noise from low-light photos."),
    ("blemish-removal", "Blemish removal", "retouch", "portrait|cleanup",
     "Removes spots and blemishes."),
    ("bulk-export", "Bulk export", "batch", "bulk|export|formats",
     "Exports many images in several sizes and formats."),
    ("product-templates", "Product photo templates", "templates", "e-commerce|layout",
     "Marketplace-ready product photo layouts."),
    ("text-removal", "Text removal", "watermark", "cleanup|text",
     "Erases captions and overlaid text."),
    ("fabric-recolor", "Fabric recolor", "outfit-swap", "fashion|color",
     "Changes the colour of a garment."),
    ("webhooks", "Webhooks", "api", "developer|automation",
     "Notifies your system when a job is done."),
    ("face-enhance", "Face enhance", "restoration", "portrait|ai|restore",
     "Sharpens and restores faces."),
    ("relight", "Relight", "retouch", "light|ai",
     "Changes the lighting of a photo after the fact."),
    ("shadow-generator", "Shadow generator", "cut-out", "shadow|product",
     "Adds a realistic drop shadow under a cut-out."),
    ("ai-expand", "AI expand", "generative", "ai|outpaint|crop",
     "Extends an image beyond its borders."),
    ("auto-resize", "Auto resize", "batch", "resize|social|bulk",
     "Resizes images for every social network."),
    ("zapier-integration", "Zapier integration", "api", "integration|no-code",
     "Connects edits to thousands of apps."),
    ("banner-templates", "Banner templates", "templates", "ads|layout",
     "Ad banners in every standard size."),
    ("scratch-repair", "Scratch repair", "restoration", "restore|old-photo",
     "Targets scratches and dust specks."),
    ("teeth-whitening", "Teeth whitening", "retouch", "portrait|beauty",
     "Whitens teeth naturally."),
]

# pairs of categories whose features go together (in both directions)
CATEGORY_BUNDLES = [("cut-out", "batch"), ("restoration", "retouch"), ("outfit-swap", "cut-out"),
                    ("generative", "cut-out"), ("templates", "batch"), ("api", "batch"),
                    ("watermark", "restoration")]

INDUSTRIES = ["e-commerce", "photography", "marketing agency", "real estate", "fashion",
              "education", "media", "other"]
INDUSTRY_P = np.array([0.26, 0.18, 0.14, 0.08, 0.12, 0.06, 0.08, 0.08])
# category affinity per industry (rows: INDUSTRIES, columns: CATEGORIES)
AFFINITY = np.array([
    # cut  outf  wmk  rest  ret  gen  tmpl  batch api
    [5.0, 1.5, 1.5, 0.5, 0.8, 2.0, 2.5, 3.0, 1.5],   # e-commerce
    [1.5, 0.3, 1.0, 4.0, 4.0, 1.0, 0.3, 1.0, 0.2],   # photography
    [2.0, 0.8, 1.5, 0.8, 1.5, 3.5, 4.0, 1.5, 0.8],   # marketing agency
    [1.5, 0.1, 2.5, 1.0, 0.5, 3.0, 1.5, 2.0, 0.3],   # real estate
    [3.0, 5.0, 0.8, 0.3, 2.0, 1.5, 1.0, 1.5, 0.5],   # fashion
    [1.0, 0.2, 1.0, 3.0, 0.5, 1.5, 2.5, 0.5, 0.2],   # education
    [1.5, 0.5, 3.0, 2.5, 1.5, 2.5, 1.5, 1.0, 1.0],   # media
    [1.5, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.0, 0.8],   # other
])
SIZES = ["solo", "small", "mid", "enterprise"]
SIZE_P = np.array([0.40, 0.33, 0.19, 0.08])
BANDS = ["light", "regular", "heavy"]
BAND_P = np.array([0.50, 0.35, 0.15])
BAND_ADOPT = np.array([3.0, 5.0, 8.0])      # mean number of distinct features
BAND_RATE = np.array([0.25, 0.9, 3.0])      # uses per active day
PLANS = [  # plan_id, name, price, quota, overage_price, includes_paid_features
    ("free", "Free", "0", "50", "", "false"),
    ("starter", "Starter", "12", "500", "0.04", "true"),
    ("pro", "Pro", "39", "2500", "0.02", "true"),
    ("business", "Business", "149", "15000", "0.01", "true"),
]
EPOCH = np.datetime64("1970-01-01T00:00:00", "s")


def _catalog(n: int, rng: np.random.Generator) -> list[dict]:
    """n features: the named ones first, then synthetic '<category> tool k' ones."""
    rows = []
    for i in range(n):
        if i < len(CATALOG):
            fid, name, cat, tags, desc = CATALOG[i]
        else:
            cat = CATEGORIES[i % len(CATEGORIES)]
            k = i - len(CATALOG) + 1
            fid = f"{cat}-tool-{k}"
            name = f"{cat.replace('-', ' ').title()} tool {k}"
            tags = f"{cat}|tool"
            desc = f"Another {cat} tool, number {k}."
        rows.append({"feature_id": fid, "name": name, "category": cat, "tags": tags,
                     "description": desc})
    paid = rng.random(n) < 0.25
    paid[:3] = False
    active = rng.random(n) >= 0.03
    active[: max(3, n // 5)] = True  # the popular ones stay active
    for i, r in enumerate(rows):
        r["requires_paid"] = bool(paid[i])
        r["active"] = bool(active[i])
    return rows


def _setup(out_dir: Path, days: int, seed: int, end: datetime | None) -> tuple[Path, int, int, np.random.Generator]:
    """The output folder (created), the time window in epoch seconds (``days`` up to ``end``, by
    default today's midnight UTC) and the seeded random generator, for either shape."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    end = end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end_s = int(end.timestamp())
    return out_dir, end_s - days * 86400, end_s, np.random.default_rng(seed)


def generate(out_dir: Path, *, users: int = 5000, features: int = 24, days: int = 90,
             seed: int = 42, end: datetime | None = None,
             progress: Callable[[int], None] | None = None, shape: str = "saas",
             ceiling: list[np.ndarray] | None = None, churn: bool = False) -> dict[str, int]:
    """Write users.csv, features.csv, plans.csv and events.csv to ``out_dir``; return row counts.
    ``shape``: "saas" (a SaaS product, tens of features) or "long-tail" (see generate_long_tail).
    ``ceiling`` (saas shape): a list that receives, per chunk of users, the rank (0 = first) of
    each user's last adoption in the generator's own ranking of that step (its choice rule without
    the random draw, knowing the user's hidden taste), for the users with two adoptions or more:
    the best any recommender can do on ``reco evaluate``'s holdout (see ceiling_metrics).
    ``churn`` (saas shape): plant churn (app/tools/churn_sim.py) and write its truth next to the CSVs; off, the
    files are those of before."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
    if shape == "long-tail":
        if ceiling is not None or churn:
            raise ValueError("the ceiling and planted churn are for the saas shape only")
        from app.tools.demodata_longtail import generate_long_tail

        return generate_long_tail(out_dir, users=users, features=features, days=days, seed=seed, end=end,
                                  progress=progress)
    if features < 5:
        raise ValueError("features must be >= 5")
    out_dir, start_s, end_s, rng = _setup(out_dir, days, seed, end)

    feats = _catalog(features, rng)
    cat_of = np.array([CATEGORIES.index(f["category"]) for f in feats])
    paid_only = np.array([f["requires_paid"] for f in feats])
    active = np.array([f["active"] for f in feats])
    # popularity within the catalog: Zipf-like on the catalog order, with noise
    base_pop = (1.0 / (np.arange(features) + 2.0) ** 0.8) * rng.lognormal(0, 0.3, features)
    success_p = np.clip(rng.normal(0.8, 0.08, features), 0.65, 0.95)
    # each feature's partner: another feature of the same category (or a bundled one)
    partner = np.empty(features, dtype=np.int64)
    for i in range(features):
        same = np.flatnonzero((cat_of == cat_of[i]) & (np.arange(features) != i))
        partner[i] = rng.choice(same) if len(same) else (i + 1) % features
    ncat = len(CATEGORIES)
    cat_link = np.eye(ncat) * 2.0
    for a, b in CATEGORY_BUNDLES:
        ia, ib = CATEGORIES.index(a), CATEGORIES.index(b)
        cat_link[ia, ib] = cat_link[ib, ia] = 1.2

    _write_features(out_dir / "features.csv", feats)
    _write_plans(out_dir / "plans.csv")

    # users
    industry = rng.choice(len(INDUSTRIES), size=users, p=INDUSTRY_P)
    size = rng.choice(len(SIZES), size=users, p=SIZE_P)
    band = rng.choice(len(BANDS), size=users, p=BAND_P)
    p_paid = 0.15 + 0.12 * size + 0.12 * (industry == INDUSTRIES.index("marketing agency")) + 0.1 * band
    paid = rng.random(users) < np.clip(p_paid, 0, 0.9)
    # signup: a third before the window, the rest spread over it (fewer near the end)
    signup = np.where(rng.random(users) < 0.35,
                      start_s - rng.integers(1, 365 * 86400, users),
                      start_s + (rng.beta(1.0, 1.6, users) * days * 86400).astype(np.int64))
    _write_users(out_dir / "users.csv", industry, size, band, paid, signup)
    plan = ChurnPlan.draw(seed, paid, band, size, industry, signup, start_s, end_s) if churn else None

    chunk = max(1, min(20_000, 4_000_000 // features))
    n_events = 0
    with (out_dir / "events.csv").open("w", newline="") as fh:
        fh.write("event_id,user_id,feature_id,occurred_at,kind,success\n")
        for lo in range(0, users, chunk):
            hi = min(users, lo + chunk)
            n = _write_event_chunk(
                fh, rng, lo, hi, n_events, industry, band, paid, signup, start_s, end_s,
                base_pop, cat_of, cat_link, partner, paid_only, active, success_p, feats, ceiling, plan)
            n_events += n
            if progress:
                progress(n)
    if plan is not None:
        plan.write_truth(out_dir, end_s)
    return {"users": users, "features": features, "plans": len(PLANS), "events": n_events}


def _write_event_chunk(fh, rng, lo, hi, first_id, industry, band, paid, signup, start_s, end_s,
                       base_pop, cat_of, cat_link, partner, paid_only, active, success_p,
                       feats, ceiling: list[np.ndarray] | None = None, churn: ChurnPlan | None = None) -> int:
    m, nfeat = hi - lo, len(base_pop)
    ncat = cat_link.shape[0]
    # taste: affinity of the industry times noise, sharpened so 1-3 categories dominate
    taste = AFFINITY[industry[lo:hi]] * rng.gamma(0.6, 1.0, (m, ncat))
    taste = taste ** 1.5
    taste /= taste.sum(axis=1, keepdims=True)
    allowed = active[None, :] & ~(paid_only[None, :] & ~paid[lo:hi, None])
    n_adopt = np.clip(rng.poisson(BAND_ADOPT[band[lo:hi]]) + 1, 1, int(allowed.sum(axis=1).min()))

    adopted = np.zeros((m, nfeat), dtype=bool)
    order = np.full((m, int(n_adopt.max())), -1, dtype=np.int64)
    cat_count = np.zeros((m, ncat))
    partner_boost = np.zeros((m, nfeat))
    rows = np.arange(m)
    for step in range(order.shape[1]):
        pull = 1.0 + (cat_count @ cat_link)[:, cat_of] + partner_boost
        score = np.log(base_pop)[None, :] + np.log(taste[:, cat_of] * 9 + 0.05) + np.log(pull)
        score = np.where(allowed & ~adopted, score, -np.inf)
        pick = np.argmax(score + rng.gumbel(size=score.shape), axis=1)
        live = step < n_adopt
        if ceiling is not None and step >= 1:  # no random draw: the output stays the same
            last = np.flatnonzero(n_adopt == step + 1)
            s = score[last]
            ceiling.append((s > s[np.arange(len(last)), pick[last]][:, None]).sum(axis=1))
        r, f = rows[live], pick[live]
        order[r, step] = f
        adopted[r, f] = True
        cat_count[r, cat_of[f]] += 1
        partner_boost[r, partner[f]] += 3.0

    # adoption times: the first at the user's start, the others spread after it
    u_start = np.maximum(signup[lo:hi], start_s) + rng.integers(0, 3 * 86400, m)
    u_start = np.minimum(u_start, end_s - 3600)
    span = (end_s - u_start).astype(np.float64)
    steps = order.shape[1]
    frac = np.sort(rng.random((m, steps)) ** 1.3, axis=1)
    frac[:, 0] = 0.0
    adopt_t = u_start[:, None] + (frac * span[:, None] * 0.85).astype(np.int64)

    # uses: rate by band, shared over adopted features (the first ones get more)
    valid = order >= 0
    share = np.where(valid, 1.0 / (np.arange(steps)[None, :] + 1.5) ** 0.7, 0.0)
    share /= share.sum(axis=1, keepdims=True)
    active_days = (end_s - adopt_t) / 86400.0
    lam = BAND_RATE[band[lo:hi], None] * share * active_days * rng.lognormal(0, 0.4, (m, 1))
    n_uses = np.where(valid, rng.poisson(lam) + 1, 0)  # the adoption itself is a use
    total = int(n_uses.sum())
    if total == 0:
        return 0
    ui, si = np.nonzero(n_uses)
    counts = n_uses[ui, si]
    ev_u = np.repeat(ui, counts)
    ev_s = np.repeat(si, counts)
    ev_f = order[ev_u, ev_s]
    t_from = adopt_t[ev_u, ev_s]
    first = np.zeros(total, dtype=bool)
    first[np.concatenate(([0], np.cumsum(counts)[:-1]))] = True
    t = np.where(first, t_from, t_from + (rng.random(total) * (end_s - t_from)).astype(np.int64))
    t = np.minimum(t, end_s - 1)
    ok = rng.random(total) < success_p[ev_f]
    # order each user's events by time
    idx = np.lexsort((t, ev_u))
    ev_u, ev_f, t, ok = ev_u[idx], ev_f[idx], t[idx], ok[idx]
    if churn is not None:  # planted churn: nothing after leaving, fading before it
        keep, ok = churn.fade(ev_u + lo, t, ok)
        ev_u, ev_f, t, ok = ev_u[keep], ev_f[keep], t[keep], ok[keep]
        total = len(t)

    ts = np.datetime_as_string(EPOCH + t.astype("timedelta64[s]"), unit="s")
    fids = np.array([f["feature_id"] for f in feats], dtype=object)[ev_f]
    okstr = np.where(ok, "true", "false")
    ids = range(first_id + 1, first_id + total + 1)
    fh.write("".join(
        f"E{i},U{u},{f},{s}Z,use,{o}\n"
        for i, u, f, s, o in zip(ids, (ev_u + lo + 1).tolist(), fids, ts, okstr, strict=True)))
    return total


def _write_features(path: Path, feats: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["feature_id", "name", "category", "requires_paid", "tags", "description", "active"])
        for f in feats:
            w.writerow([f["feature_id"], f["name"], f["category"], str(f["requires_paid"]).lower(),
                        f["tags"], f["description"], str(f["active"]).lower()])


def _write_plans(path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["plan_id", "name", "price", "quota", "overage_price", "includes_paid_features"])
        w.writerows(PLANS)


def _write_users(path: Path, industry, size, band, paid, signup) -> None:
    ts = np.datetime_as_string(EPOCH + signup.astype("timedelta64[s]"), unit="s")
    with path.open("w", newline="") as fh:
        fh.write("user_id,paid,industry,company_size,usage_band,signup_at\n")
        fh.write("".join(
            f"U{i + 1},{'true' if p else 'false'},{INDUSTRIES[ind]},{SIZES[s]},{BANDS[b]},{t}Z\n"
            for i, (p, ind, s, b, t) in enumerate(zip(paid.tolist(), industry.tolist(), size.tolist(),
                                                      band.tolist(), ts, strict=True))))


def ceiling_metrics(ranks: list[np.ndarray], k: int = 10) -> dict[str, float]:
    """NDCG@k, HitRate@k and MRR@k of the ranks collected by ``generate(..., ceiling=ranks)``."""
    r = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    if not len(r):
        return {"users": 0, "ndcg": 0.0, "hit_rate": 0.0, "mrr": 0.0}
    hit = r < k
    return {"users": int(len(r)), "ndcg": float(np.where(hit, 1.0 / np.log2(r + 2.0), 0.0).mean()),
            "hit_rate": float(hit.mean()), "mrr": float(np.where(hit, 1.0 / (r + 1.0), 0.0).mean())}


# --------------------------------------------------------------------------------------------
# shape "long-tail": a large catalog (thousands of items) with Zipf-like popularity
# --------------------------------------------------------------------------------------------

SHAPES = ("saas", "long-tail")
