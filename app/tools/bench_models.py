"""`reco bench ease`: time and peak memory of the EASE numpy step (jobs/ease.py) per catalog size.

Each size runs in a fresh Python process (``python -m app.tools.bench_models child ...``) so its peak RSS
(``resource.getrusage``: ru_maxrss) is its own. The interactions are synthetic: ``users`` users with
a median of ``per_user`` features each (log-normal), drawn with a Zipf-like popularity, which is the
shape of `reco generate --shape long-tail`. Measured: RᵀR (the Gram matrix), the inverse and scaling
(ease_weights, the Gram matrix included), the top K per target, and (only when ``check`` is set: it
costs a second inverse) the weights against a plain dense float64 computation of the formula.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np

from jobs import ease


def synthetic(n_items: int, n_users: int, per_user: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of a binary R, users sorted ascending, no duplicate pairs."""
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    sizes = np.minimum(np.maximum(1, rng.lognormal(np.log(per_user), 0.6, n_users).astype(np.int64)), n_items // 2)
    draws = rng.choice(n_items, size=int(sizes.sum() * 1.3) + 16, p=pop)
    users = np.repeat(np.arange(n_users), sizes)
    need = len(users)
    items = draws[:need] if len(draws) >= need else np.resize(draws, need)
    pairs = np.unique(users * n_items + items)  # repeats of a pair collapse (binary R)
    return pairs // n_items, pairs % n_items


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(n_items: int, n_users: int, per_user: int, k: int, lam: float, check: bool) -> dict:
    """One measurement, in this process (meant to be a fresh one)."""
    users, items = synthetic(n_items, n_users, per_user)
    base = _rss_mib()
    t0 = time.perf_counter()
    gram = ease.gram_matrix(users, items, n_items)
    t1 = time.perf_counter()
    del gram
    t2 = time.perf_counter()
    b = ease.ease_weights(users, items, n_items, lam)
    t3 = time.perf_counter()
    src, tgt, w = ease.top_k_per_target(b, k, np.arange(n_items))
    t4 = time.perf_counter()
    out = {"features": n_items, "users": n_users, "interactions": len(users), "rows": len(w),
           "gram_s": t1 - t0, "weights_s": t3 - t2,
           "top_k_s": t4 - t3, "base_mib": base, "peak_mib": _rss_mib(), "dtype": str(b.dtype)}
    if check:
        p = np.linalg.inv(np.asarray(_gram64(users, items, n_items)) + lam * np.eye(n_items))
        ref = -p / np.diag(p)[None, :]
        np.fill_diagonal(ref, 0.0)
        out["max_abs_err"] = float(np.abs(ref - b).max())
        out["max_weight"] = float(np.abs(ref).max())
        ref_src, ref_tgt, _ = ease.top_k_per_target(ref, k, np.arange(n_items))
        same = set(zip(ref_src.tolist(), ref_tgt.tolist(), strict=True)) & set(zip(src.tolist(), tgt.tolist(),
                                                                                  strict=True))
        out["top_k_agree"] = len(same) / max(1, len(ref_src))
    return out


def _gram64(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    dense = np.zeros((int(users[-1]) + 1, n_items))
    dense[users, items] = 1.0
    return dense.T @ dense


def measure(sizes: list[int], n_users: int = 10_000, per_user: int = 135, k: int = 20, lam: float = 250.0,
            check: bool = False) -> list[dict]:
    """One fresh process per size; returns the children's measurements (or their error)."""
    results = []
    for n in sizes:
        proc = subprocess.run([sys.executable, "-m", "app.tools.bench_models", "child", str(n), str(n_users),
                               str(per_user), str(k), str(lam), "1" if check else "0"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            results.append({"features": n, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


if __name__ == "__main__":  # python -m app.tools.bench_models child N USERS PER_USER K LAMBDA CHECK
    _, cmd, n, u, m, kk, lm, chk = sys.argv
    assert cmd == "child"
    print(json.dumps(child(int(n), int(u), int(m), int(kk), float(lm), chk == "1")))
