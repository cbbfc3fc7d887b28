"""The console's churn page (/console/churn): one read-only call, ``reco.api_console_churn`` (the model,
its registry, the latest scores, ROC / PR / calibration, feature importance, the measured win-back
rates), then, where the retention loop is installed, ``reco.api_console_churn_list`` for the budget
of the slider (``?budget=``, server-driven: the form is a GET, console.js submits it when the slider
is let go). reco.retention_list stores the list it makes; the console's call makes it in a
subtransaction that it rolls back (sql/086_console_churn.sql), so it runs on the write pool but
leaves nothing behind. Session, CSP and escaping: as every console page (app/console/routes.py)."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from decimal import Decimal
from typing import Any

import psycopg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.api.fairness import console_budget
from app.console.auth import credential
from app.console.data import Unavailable, page_data, query
from app.console.render import PREFIX, render

router = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(console_budget)])  # app.api.fairness

#: ?budget=: ASCII digits, at most two decimals, at most 1e9 (what reco.retention_list accepts)
_BUDGET = re.compile(r"[0-9]{1,10}(\.[0-9]{1,2})?")
DEFAULT_BUDGET = Decimal(500)
MAX_BUDGET = Decimal(1_000_000_000)
TIERS = ("high", "medium", "low")


def budget_of(value: str | None) -> tuple[Decimal, str | None]:
    """The slider's budget: (the budget, None), or (the default, why the value was refused)."""
    if value is None or value.strip() == "":
        return DEFAULT_BUDGET, None
    value = value.strip()
    if not _BUDGET.fullmatch(value) or Decimal(value) > MAX_BUDGET:
        return DEFAULT_BUDGET, (f"budget must be a number from 0 to {MAX_BUDGET:,} with at most two decimals; "
                                f"showing {DEFAULT_BUDGET}")
    return Decimal(value), None


def slider_max(budget: Decimal) -> int:
    """The slider's end: 2,000, or a round number above twice the budget."""
    top = max(Decimal(2000), budget * 2)
    step = Decimal(10) ** max(len(str(int(top))) - 1, 0)
    return math.ceil(top / step) * int(step)


def _series(points: list[dict], x: str, y: str) -> tuple[list[float], list[float]]:
    """Points sorted by x (uPlot wants x ascending), None dropped."""
    pairs = sorted((float(p[x]), float(p[y])) for p in points if p.get(x) is not None and p.get(y) is not None)
    return [a for a, _ in pairs], [b for _, b in pairs]


def charts(page: dict) -> dict[str, dict]:
    """The page's uPlot specifications: histogram, ROC, PR, calibration."""
    out: dict[str, dict] = {}
    unit = {"type": "num", "xrange": [0, 1], "height": 240}
    hist = (page.get("scores") or {}).get("histogram") or []
    if hist:
        out["histogram"] = {**unit, "xtitle": "churn probability", "xlabel": "probability", "ylabel": "users",
                            "x": [(float(b["low"]) + float(b["high"])) / 2 for b in hist],
                            "series": [{"label": "users", "kind": "bars", "scale": "y",
                                        "values": [b["users"] for b in hist]}]}
    matured = page.get("matured") or {}
    if matured.get("roc"):
        x, y = _series(matured["roc"], "fpr", "tpr")
        out["roc"] = {**unit, "yrange": [0, 1], "xtitle": "false positive rate", "xlabel": "FPR",
                      "ylabel": "true positive rate",
                      "x": x, "series": [{"label": "ROC", "kind": "line", "scale": "y", "values": y},
                                         {"label": "chance", "kind": "dash", "scale": "y", "values": x}]}
    if matured.get("pr"):
        x, y = _series(matured["pr"], "recall", "precision")
        base = matured["churners"] / matured["users"] if matured.get("users") else None
        out["pr"] = {**unit, "yrange": [0, 1], "xtitle": "recall", "xlabel": "recall", "ylabel": "precision", "x": x,
                     "series": [{"label": "precision", "kind": "line", "scale": "y", "values": y}]
                     + ([{"label": "churn rate", "kind": "dash", "scale": "y", "values": [base] * len(x)}]
                        if base is not None else [])}
    calibration = ((page.get("model") or {}).get("metrics") or {}).get("calibration") or matured.get("calibration")
    if calibration:
        x, y = _series(calibration, "predicted", "observed")
        out["calibration"] = {**unit, "yrange": [0, 1], "points": True, "xtitle": "predicted churn probability",
                              "xlabel": "predicted", "ylabel": "observed churn rate", "x": x,
                              "series": [{"label": "observed", "kind": "line", "scale": "y", "values": y},
                                         {"label": "perfect", "kind": "dash", "scale": "y", "values": x}]}
    return out


def importance_bars(importance: dict | None, width: int = 220) -> list[dict]:
    rows = (importance or {}).get("features") or []
    top = max((float(r["importance"]) for r in rows), default=0.0)
    return [{**r, "w": round(width * float(r["importance"]) / top, 1) if top > 0 else 0} for r in rows]


def rates(effects: list[dict] | None) -> list[dict]:
    """retention_effects' rows in action, tier order (a column the retention loop does not return reads as None)."""
    rows = [defaultdict(lambda: None, r) for r in effects or []]
    return sorted(rows, key=lambda r: (str(r["action"]), TIERS.index(r["tier"]) if r["tier"] in TIERS else 9))


@router.get("/churn")
async def churn(request: Request, budget: str | None = None) -> Response:
    data, resp = await page_data(request, "reco.api_console_churn(%s)")
    if resp:
        return resp
    page = data["page"]
    amount, budget_error = budget_of(budget)
    listing: dict[str, Any] | None = None
    if page["retention"]["list"] and page.get("scores"):
        try:
            # the what-if list: made and rolled back in the database, so on the write pool
            listing = await query(request, "SELECT reco.api_console_churn_list(%s, %s, 20)",
                                  (credential(request), amount), write=True)
        except (Unavailable, psycopg.Error) as exc:
            diag = getattr(exc, "diag", None)
            listing = {"budget": amount, "error": (diag.message_primary if diag else None) or str(exc),
                       "hint": diag.message_hint if diag else None}
        if isinstance(listing, str):
            listing = json.loads(listing)
    model = page.get("model")
    # the metrics a model stored (keys may be missing: a model of another job version): absent keys read as None
    metrics = defaultdict(lambda: None, (model or {}).get("metrics") or {})
    return render(request, "churn.html", tenant=data["tenant"], d=page, met=metrics, charts=charts(page),
                  bars=importance_bars(page.get("importance")), effects=rates(page["retention"].get("effects")),
                  listing=listing, budget=amount, budget_error=budget_error, budget_max=slider_max(amount))
