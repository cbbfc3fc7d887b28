"""What the console's pages compute from the SQL rows (presentation only): the series the charts
draw, a recommendation's reason in words and its score's parts, the experiment report's sections."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.console.render import parse_time

# --- charts: the SQL rows as the series console.js draws ------------------------------------

def _day(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())


def epoch(value: Any) -> int | None:
    t = parse_time(value)
    return int(t.timestamp()) if t else None


def daily_chart(rows: list[dict], series: list[tuple[str, str, str]]) -> dict | None:
    """rows with 'day' and counts -> a time chart; series: (column, label, kind[:scale]). Today
    (UTC) is left out: a day not over yet would plot as a cliff towards 0."""
    today = datetime.now(UTC).date().isoformat()
    rows = [r for r in rows if str(r["day"])[:10] != today]
    if not rows or not any(r.get(col) for r in rows for col, _, _ in series):
        return None
    out = []
    for col, label, kind in series:
        k, _, scale = kind.partition(":")
        out.append({"label": label, "kind": k, "scale": scale or "y", "values": [r.get(col) for r in rows]})
    return {"type": "time", "x": [_day(r["day"]) for r in rows], "series": out}


# --- recommendations and the experiment report ------------------------------------------------

COMPONENTS = {"itemcf": ("#2f6fdf", "similar to features you used"),
              "usercf": ("#8e44ad", "used by users like you"),
              "prior": ("#16a085", "common in your segment"),
              "popularity": ("#e67e22", "popular in your segment"),
              "session": ("#c0392b", "related to this session"),
              "explore": ("#7f8c8d", "exploring: little is known about it yet")}


def reason(rec: dict, segment: str | None) -> str:
    """A recommendation's reason in words: 'because you used …' when the user's own features led to
    it, else the component that contributed most."""
    because = rec.get("because") or []
    if because:
        return "because you used " + ", ".join(b.get("name") or b["feature_id"] for b in because)
    comps = {k: v for k, v in (rec.get("components") or {}).items() if k in COMPONENTS and v}
    if not comps:
        return "popular"
    top = max(comps, key=comps.get)
    text = COMPONENTS[top][1]
    if top in ("prior", "popularity") and (rec.get("segment") or segment) not in (None, "*=*"):
        text += f" ({rec.get('segment') or segment})"
    return text


def component_bar(components: dict, top: float, width: int = 160) -> list[dict]:
    """The score's parts as a stacked bar (SVG rects drawn by the template), in a fixed order, on
    one scale for the whole list: ``top`` (the largest sum of parts) is the full width."""
    parts = [(k, float(components[k])) for k in COMPONENTS if (components.get(k) or 0) > 0]
    out, x = [], 0.0
    for k, v in parts:
        w = width * v / top if top > 0 else 0
        out.append({"name": k, "value": v, "x": round(x, 2), "w": round(w, 2), "color": COMPONENTS[k][0]})
        x += w
    return out


METRIC_SECTIONS = ("metric", "guardrail", "oec", "interleave")


def report_view(page: dict) -> dict:
    """The experiment report's rows split by section, and the two plots' data."""
    rows = page.get("report") or []
    variants = (page["experiment"].get("variants") or [])
    control = variants[0]["name"] if variants else None
    by = {s: [r for r in rows if r.get("section") == s] for s in ("srm", "sequential", "decision", "settings")}
    metrics = [r for r in rows if r.get("section") in METRIC_SECTIONS]
    known = {"srm", "sequential", "decision", "settings", *METRIC_SECTIONS}
    other = [r for r in rows if r.get("section") not in known]
    intervals = []
    for r in metrics:
        if r.get("variant") == control and r.get("section") != "interleave":
            continue
        relative = r.get("rel_low") is not None and r.get("rel_high") is not None
        low, high, value = ((r.get("rel_low"), r.get("rel_high"), r.get("rel_lift")) if relative
                            else (r.get("lift_low"), r.get("lift_high"), r.get("lift")))
        if low is None or high is None:
            continue
        label = f"{r.get('metric') or ''} · {r.get('variant') or ''}".strip(" ·")
        intervals.append({"label": label, "low": low, "high": high, "value": value, "relative": relative,
                          "section": r.get("section"),
                          "p": r["p_adjusted"] if r.get("p_adjusted") is not None else r.get("p_value")})
    plots = {}
    rel = [i for i in intervals if i["relative"]]
    ab = [i for i in intervals if not i["relative"]]
    if rel:
        plots["relative"] = {"type": "interval", "unit": "%", "rows": rel}
    if ab:
        plots["absolute"] = {"type": "interval", "unit": "", "rows": ab}
    bounds = page.get("boundaries") or []
    if bounds:
        # an infinite boundary (a look that spends no alpha) comes as the string "Infinity": not drawn
        finite = [b for b in bounds if isinstance(b.get("z_boundary"), int | float) and b["z_boundary"] < 1e6]
        plots["sequential"] = {
            "type": "sequential",
            "looks": [{"x": b["info_fraction"], "z": b["z_boundary"], "look": b["look"]} for b in finite],
            "observed": [{"label": o["variant"], "x": min(page.get("info_fraction") or 0, 1.0), "z": o["z"]}
                         for o in page.get("observed") or [] if o.get("z") is not None
                         and page.get("info_fraction") is not None]}
    # users per variant: the SRM rows' when they name variants, else the primary metric's rows
    split = [(r["variant"], r.get("n")) for r in by["srm"] if r.get("variant")] or [
        (r["variant"], r.get("n")) for r in metrics
        if r.get("section") == "metric" and r.get("metric") == page["experiment"].get("primary_metric")
        and r.get("variant")]
    total_weight = sum(float(v.get("weight") or 0) for v in variants) or 1
    weights = {v["name"]: float(v.get("weight") or 0) / total_weight for v in variants}
    total = sum(n or 0 for _, n in split)
    split = [{"variant": v, "n": n, "share": (n or 0) / total if total else None, "expected": weights.get(v)}
             for v, n in split]
    srm_bad = any((r.get("p_value") is not None and r["p_value"] < 0.001) or
                  "mismatch" in str(r.get("note") or "").lower() or str(r.get("decision") or "").startswith("invalid")
                  for r in by["srm"])
    has = {k: any(r.get(k) is not None for r in metrics) for k in ("cuped_lift", "p_better", "p_adjusted", "note")}
    return {"control": control, "srm": by["srm"], "srm_bad": srm_bad, "srm_empty": not total, "split": split,
            "metrics": metrics, "has": has, "sequential": by["sequential"], "decision": by["decision"],
            "settings": by["settings"], "other": other, "plots": plots}
