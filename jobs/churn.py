"""Churn models (the Python side of the churn_train and churn_score jobs, sql/083_churn_models.sql).

The rows come from SQL: reco.churn_training_rows gives every eligible user's features and label at each
snapshot day of reco.churn_snapshots (training days, then the newest matured days for validation). Two models
are fitted on the training days and compared on the validation days:

- a logistic regression in numpy (features standardised after ln(1 + x) for the heavy-tailed ones, L2 on the
  coefficients, Newton's method): its terms become rows of reco.model_coefficients, so SQL scores with it
  (reco.churn_score, reco.churn_score_live);
- gradient-boosted trees (LightGBM) when the training days hold churn_lightgbm_min_rows rows; the number of
  trees is chosen by early stopping on the validation days.

Both are then refitted on training and validation days together and registered (reco.models); the one with the
better validation AUC is activated. Metrics: AUC, Brier score and a calibration table (deciles of the predicted
probability: mean prediction vs observed churn rate)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import psycopg
from psycopg.rows import dict_row, tuple_row

from jobs import tenant_slugs


class ChurnDataError(ValueError):
    """The tenant's data cannot support a churn model (too few churners, too short a history)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); nan without both classes."""
    y, p = np.asarray(y, dtype=bool), np.asarray(p, dtype=float)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    sp = p[order]
    edges = np.flatnonzero(np.diff(sp)) + 1  # runs of equal scores share their average rank
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(sp)]))
    ranks = np.empty(len(p), dtype=float)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Deciles of the predicted probability: rows, mean prediction, observed churn rate."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    order = np.argsort(p, kind="mergesort")
    out = []
    for part in np.array_split(order, bins):
        if len(part):
            out.append({"rows": int(len(part)), "predicted": round(float(p[part].mean()), 4),
                        "observed": round(float(y[part].mean()), 4)})
    return out


def quantile_edges(v: np.ndarray, bins: int = 10) -> list[float]:
    """The inner decile edges of a distribution (PSI and KS bins for monitoring)."""
    return [float(e) for e in np.unique(np.quantile(np.asarray(v, dtype=float), np.linspace(0, 1, bins + 1)[1:-1]))]


def bin_shares(v: np.ndarray, edges: list[float]) -> list[float]:
    counts = np.bincount(np.searchsorted(np.asarray(edges), np.asarray(v, dtype=float), side="right"),
                         minlength=len(edges) + 1)
    return [float(c) / max(len(v), 1) for c in counts]


# --------------------------------------------------------------------------------------------
# logistic regression
# --------------------------------------------------------------------------------------------

@dataclass
class Logistic:
    features: list[str]
    log_features: set[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    l2: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        g = np.array(x, dtype=float, copy=True)
        for j, f in enumerate(self.features):
            if f in self.log_features:
                g[:, j] = np.log1p(np.maximum(g[:, j], 0.0))
        return g

    def z(self, x: np.ndarray) -> np.ndarray:
        return (self.transform(x) - self.mean) / self.scale

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _sigmoid(self.intercept + self.z(x) @ self.coef)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return self.z(x) * self.coef


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(t, -700, 700)))


def fit_logistic_z(z: np.ndarray, y: np.ndarray, l2: float, *, iters: int = 100,
                   tol: float = 1e-10) -> tuple[float, np.ndarray]:
    """Minimise Σ log-loss + l2/2 · ||w||² (intercept b not penalised) over standardised z by Newton's method.
    Returns (b, w)."""
    n, k = z.shape
    a = np.hstack([np.ones((n, 1)), z])
    theta = np.zeros(k + 1)
    prior = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    theta[0] = np.log(prior / (1 - prior))
    pen = np.full(k + 1, l2)
    pen[0] = 0.0
    for _ in range(iters):
        p = _sigmoid(a @ theta)
        grad = a.T @ (p - y) + pen * theta
        w = p * (1 - p)
        hess = (a * w[:, None]).T @ a + np.diag(pen) + 1e-9 * np.eye(k + 1)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return float(theta[0]), theta[1:]


def fit_logistic(x: np.ndarray, y: np.ndarray, features: list[str], log_features: set[str],
                 l2: float) -> Logistic:
    model = Logistic(features, set(log_features), np.zeros(len(features)), np.ones(len(features)),
                     np.zeros(len(features)), 0.0, l2)
    g = model.transform(x)
    model.mean = g.mean(axis=0)
    sd = g.std(axis=0)
    model.scale = np.where(sd > 1e-12, sd, 1.0)
    model.intercept, model.coef = fit_logistic_z((g - model.mean) / model.scale, y.astype(float), l2)
    return model


# --------------------------------------------------------------------------------------------
# LightGBM
# --------------------------------------------------------------------------------------------

LGBM_PARAMS = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 50,
               "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
               "seed": 7, "deterministic": True, "num_threads": 2, "verbose": -1}


def fit_lightgbm(x: np.ndarray, y: np.ndarray, features: list[str], rounds: int | None = None,
                 valid: tuple[np.ndarray, np.ndarray] | None = None):
    """Trees on the raw features; with ``valid`` the number of rounds stops early on its log-loss."""
    import lightgbm as lgb

    train = lgb.Dataset(x, label=y.astype(float), feature_name=features, free_raw_data=False)
    if valid is not None:
        vset = lgb.Dataset(valid[0], label=valid[1].astype(float), reference=train)
        return lgb.train(LGBM_PARAMS, train, num_boost_round=1000, valid_sets=[vset],
                         callbacks=[lgb.early_stopping(50, verbose=False)])
    return lgb.train(LGBM_PARAMS, train, num_boost_round=rounds or 100)


def load_lightgbm(blob: bytes):
    import lightgbm as lgb

    return lgb.Booster(model_str=bytes(blob).decode())


def lightgbm_reasons(booster, x: np.ndarray, features: list[str], top: int = 3) -> list[list[dict]]:
    contrib = booster.predict(x, pred_contrib=True)[:, :len(features)]
    return [_reasons(features, x[i], contrib[i], top) for i in range(len(x))]


def _reasons(features: list[str], x: np.ndarray, contrib: np.ndarray, top: int = 3) -> list[dict]:
    order = np.argsort(-contrib, kind="mergesort")[:top]
    return [{"feature": features[j], "value": round(float(x[j]), 4), "contribution": round(float(contrib[j]), 4)}
            for j in order if contrib[j] > 0]


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------

@dataclass
class Rows:
    as_of: np.ndarray
    role: np.ndarray
    user_key: np.ndarray
    x: np.ndarray
    y: np.ndarray
    features: list[str] = field(default_factory=list)


def _settings(conn, tid: int, keys: list[str]) -> dict:
    cur = conn.cursor(row_factory=tuple_row)
    return {k: cur.execute("SELECT reco.setting(%s, %s)", (k, tid)).fetchone()[0] for k in keys}


def training_rows(conn, tenant: str, until: date | None = None) -> Rows:
    cur = conn.cursor(row_factory=tuple_row)
    features = cur.execute("SELECT reco.churn_feature_names()").fetchone()[0]
    rows = cur.execute("SELECT as_of, role, user_key, x, churned FROM reco.churn_training_rows(%s, %s)",
                       (tenant, until)).fetchall()
    if not rows:
        return Rows(np.array([]), np.array([]), np.array([]), np.zeros((0, len(features))), np.array([]), features)
    as_of, role, user_key, x, y = zip(*rows, strict=True)
    return Rows(np.array(as_of), np.array(role), np.array(user_key, dtype=np.int64), np.array(x, dtype=float),
                np.array(y, dtype=bool), features)


def _check_support(rows: Rows, min_churners: int) -> None:
    for role in ("train", "validation"):
        y = rows.y[rows.role == role]
        churners, kept = int(y.sum()), int((~y).sum())
        if churners < min_churners or kept < min_churners:
            raise ChurnDataError(
                f"too few churners to train a churn model: the {role} snapshots hold {churners} churners and "
                f"{kept} retained users (churn_min_churners: {min_churners})",
                "More users or a longer history are needed; churn_window_days, churn_train_snapshots and "
                "churn_min_churners change what is required.")


@dataclass
class TrainResult:
    tenant: str
    versions: dict[str, int]
    active: int
    active_kind: str
    metrics: dict[str, dict]
    rows: int
    message: str


def train(conn, tenant: str, until: date | None = None, *, activate: bool = True,
          note: str = "") -> TrainResult:
    """Fit, compare, register (and activate the better of) the churn models of one tenant."""
    cur = conn.cursor(row_factory=tuple_row)
    tid = cur.execute("SELECT reco.tenant_id(%s)", (tenant,)).fetchone()[0]
    try:
        rows = training_rows(conn, tenant, until)
    except psycopg.errors.DataException as exc:
        raise ChurnDataError(exc.diag.message_primary or str(exc), exc.diag.message_hint or "") from exc
    s = _settings(conn, tid, ["churn_min_churners", "churn_l2", "churn_lightgbm_min_rows", "churn_window_days",
                              "churn_observation_days", "churn_activity_kinds", "churn_snapshot_every_days",
                              "churn_min_history_days"])
    _check_support(rows, int(s["churn_min_churners"]))
    log_features = set(cur.execute("SELECT reco.churn_log_features()").fetchone()[0])
    tr, va = rows.role == "train", rows.role == "validation"
    x_tr, y_tr, x_va, y_va = rows.x[tr], rows.y[tr], rows.x[va], rows.y[va]
    l2 = float(s["churn_l2"])

    def scored(p: np.ndarray) -> dict:
        return {"auc": round(auc(y_va, p), 4), "brier": round(brier(y_va, p), 4), "calibration": calibration(y_va, p)}

    candidates: dict[str, dict] = {}
    lr = fit_logistic(x_tr, y_tr, rows.features, log_features, l2)
    p_lr = lr.predict(x_va)
    candidates["logistic"] = {"metrics": scored(p_lr), "p": p_lr}
    if int(tr.sum()) >= int(s["churn_lightgbm_min_rows"]):
        booster = fit_lightgbm(x_tr, y_tr, rows.features, valid=(x_va, y_va))
        p_gb = booster.predict(x_va, num_iteration=booster.best_iteration)
        candidates["lightgbm"] = {"metrics": scored(p_gb), "p": p_gb, "rounds": max(booster.best_iteration, 1)}
    best = max(candidates, key=lambda k: (candidates[k]["metrics"]["auc"], k == "logistic"))

    days = {r: sorted({str(d) for d in rows.as_of[rows.role == r]}) for r in ("train", "validation")}
    windows = {"churn_window_days": s["churn_window_days"], "observation_days": s["churn_observation_days"],
               "activity_kinds": s["churn_activity_kinds"], "snapshot_every_days": s["churn_snapshot_every_days"],
               "min_history_days": s["churn_min_history_days"], "train_days": days["train"],
               "validation_days": days["validation"], "until": str(until) if until else None,
               "fitted_on": "train and validation days (the metrics: fitted on train, measured on validation)"}
    base = {"train_rows": int(tr.sum()), "validation_rows": int(va.sum()), "train_churners": int(y_tr.sum()),
            "validation_churners": int(y_va.sum()), "compared": {k: v["metrics"]["auc"] for k, v in candidates.items()}}
    # the final fit: every matured snapshot day, the validated recipe
    x_all, y_all = rows.x, rows.y
    versions: dict[str, int] = {}
    for kind, c in candidates.items():
        p = c["p"]
        metrics = {**base, **c["metrics"], "score_edges": quantile_edges(p), "score_shares": None}
        metrics["score_shares"] = bin_shares(p, metrics["score_edges"])
        metrics["feature_edges"] = {f: quantile_edges(x_va[:, j]) for j, f in enumerate(rows.features)}
        metrics["feature_shares"] = {f: bin_shares(x_va[:, j], metrics["feature_edges"][f])
                                     for j, f in enumerate(rows.features)}
        if kind == "logistic":
            final = fit_logistic(x_all, y_all, rows.features, log_features, l2)
            params = {"intercept": final.intercept, "l2": l2, "log_features": sorted(log_features)}
            coefs = [{"feature": f, "mean": float(final.mean[j]), "scale": float(final.scale[j]),
                      "coef": float(final.coef[j])} for j, f in enumerate(rows.features)]
            blob = None
        else:
            import lightgbm

            final = fit_lightgbm(x_all, y_all, rows.features, rounds=c["rounds"])
            params = {"library": f"lightgbm {lightgbm.__version__}", "rounds": c["rounds"], **LGBM_PARAMS}
            coefs, blob = [], final.model_to_string().encode()
        versions[kind] = cur.execute(
            "SELECT reco.churn_register(%s, %s, %s, %s, %s, %s, %s, %s)",
            (tenant, kind, json.dumps(windows), rows.features, json.dumps(metrics), json.dumps(params), blob,
             json.dumps(coefs))).fetchone()[0]
    if note:
        cur.execute("UPDATE reco.models SET note = %s WHERE tenant_id = %s AND version = ANY (%s)",
                    (note, tid, list(versions.values())))
    if activate:
        cur.execute("SELECT reco.activate_model(%s, %s)", (tenant, versions[best]))
    compared = ", ".join(f"{k} AUC {v['metrics']['auc']:.4f} (version {versions[k]})" for k, v in candidates.items())
    message = (f"{len(rows.y)} snapshot rows ({int(tr.sum())} train, {int(va.sum())} validation); {compared}; "
               + (f"activated {best} version {versions[best]}" if activate else "none activated"))
    return TrainResult(tenant, versions, versions[best], best, {k: v["metrics"] for k, v in candidates.items()},
                       len(rows.y), message)


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------

def score(conn, tenant: str, as_of: date | None = None) -> tuple[int, date, int, str]:
    """Score every eligible user with the active model: logistic in SQL (reco.churn_score), LightGBM here.
    Returns (users scored, as_of, model version, kind)."""
    cur = conn.cursor(row_factory=dict_row)
    tid = cur.execute("SELECT reco.tenant_id(%s) AS t", (tenant,)).fetchone()["t"]
    m = cur.execute("SELECT model_id, version, kind, features, model_blob FROM reco.models "
                    "WHERE tenant_id = %s AND purpose = 'churn' AND active", (tid,)).fetchone()
    if m is None:
        raise ChurnDataError(f'tenant "{tenant}" has no active churn model', "Train one: `reco churn train`.")
    day = as_of or cur.execute("SELECT reco.churn_score_day(%s) AS d", (tenant,)).fetchone()["d"]
    if m["kind"] == "logistic":
        n = cur.execute("SELECT reco.churn_score(%s, %s) AS n", (day, tenant)).fetchone()["n"]
        return n, day, m["version"], m["kind"]
    names = cur.execute("SELECT reco.churn_feature_names() AS n").fetchone()["n"]
    rows = cur.execute("SELECT user_key, x FROM reco.churn_matrix(%s, ARRAY[%s::date])", (tenant, day)).fetchall()
    booster = load_lightgbm(m["model_blob"])
    feats = list(m["features"])
    pos = [names.index(f) if f in names else -1 for f in feats]
    if rows:
        full = np.array([r["x"] for r in rows], dtype=float)
        x = np.column_stack([full[:, j] if j >= 0 else np.zeros(len(rows)) for j in pos])
        p = booster.predict(x)
        reasons = lightgbm_reasons(booster, x, feats)
    else:
        p, reasons = np.array([]), []
    hi, med = (float(v) for v in _settings(conn, tid, ["churn_tier_high", "churn_tier_medium"]).values())
    with conn.transaction():
        cur.execute("DELETE FROM reco.churn_scores WHERE tenant_id = %s AND as_of = %s", (tid, day))
        with cur.copy("COPY reco.churn_scores (tenant_id, as_of, user_key, model_id, probability, tier, reasons) "
                      "FROM STDIN") as cp:
            for r, pi, rs in zip(rows, p, reasons, strict=True):
                pi = float(min(max(pi, 0.0), 1.0))
                tier = "high" if pi >= hi else "medium" if pi >= med else "low"
                cp.write_row((tid, day, r["user_key"], m["model_id"], pi, tier, json.dumps(rs)))
    return len(rows), day, m["version"], m["kind"]


# --------------------------------------------------------------------------------------------
# the runner's steps (jobs.runner.PYTHON_STEPS)
# --------------------------------------------------------------------------------------------

def train_for_runner(conn, tenant: str | None) -> int:
    """churn_train's Python step for the tenant or every tenant; what each got (or why not) is left in the
    session (reco.churn_train_done) for the SQL job body to log."""
    done = {}
    for slug in tenant_slugs(conn, tenant):
        try:
            r = train(conn, slug)
            done[slug] = {"rows": r.rows, "message": r.message}
        except ChurnDataError as exc:
            done[slug] = {"error": str(exc), "hint": exc.hint}
    conn.execute("SELECT set_config('reco.churn_train_done', %s, false)", (json.dumps(done),))
    return len(done)


def score_for_runner(conn, tenant: str | None) -> int:
    done = {}
    for slug in tenant_slugs(conn, tenant):
        try:
            n, day, _version, _kind = score(conn, slug)
            done[slug] = {"rows": n, "as_of": str(day)}
        except ChurnDataError:
            done[slug] = {"rows": 0}
    conn.execute("SELECT set_config('reco.churn_score_done', %s, false)", (json.dumps(done),))
    return len(done)
