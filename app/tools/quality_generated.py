"""`reco bench quality --data generated`: the project's own offline evaluation (jobs.evaluate) on the demo
generator's data, against the targets hybrid >= 1.3 x popularity and no component above the hybrid."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.tools.quality import (
    COMPONENTS,
    GENERATED_TENANT,
    TARGET_LIFT,
    Log,
    _connect,
    _quiet,
    quality_database,
    run_jobs,
    tenant_events,
)

GENERATED = {"users": 20_000, "features": 24, "days": 90, "seed": 3}


@dataclass
class GeneratedResult:
    files: str
    generated: bool
    import_seconds: float | None
    jobs_seconds: float
    users: int
    seconds: float
    scores: dict[str, dict[str, float]]
    #: the generator's own ranking of each user's held-out adoption (demodata.ceiling_metrics)
    ceiling: dict[str, float] | None = None

    @property
    def hybrid(self) -> float:
        return self.scores["hybrid"]["ndcg"]

    def lift(self, model: str) -> float | None:
        other = self.scores.get(model, {}).get("ndcg")
        return self.hybrid / other - 1 if other else None

    def above_hybrid(self) -> list[str]:
        return [m for m in COMPONENTS if m in self.scores and self.scores[m]["ndcg"] > self.hybrid]

    @property
    def lift_met(self) -> bool:
        return self.hybrid >= TARGET_LIFT * (self.scores.get("baseline", {}).get("ndcg") or 0)

    @property
    def targets_met(self) -> bool:
        return self.lift_met and not self.above_hybrid()

    def as_json(self) -> dict:
        return {"files": self.files, "generated": self.generated, "import_seconds": self.import_seconds,
                "jobs_seconds": round(self.jobs_seconds, 2), "users": self.users,
                "evaluate_seconds": round(self.seconds, 1),
                "results": {m: {k: round(v, 4) for k, v in s.items()} for m, s in self.scores.items()},
                "lift_over_baseline": self.lift("baseline"), "lift_over_popularity": self.lift("popularity"),
                "components_above_hybrid": self.above_hybrid(), "targets_met": self.targets_met,
                "ceiling": self.ceiling}


def run_generated(base_url: str, *, reuse: bool = False, fresh_database: bool = True,
                  log: Log = _quiet) -> GeneratedResult:
    """Demo data (20,000 users, 24 features, 90 days, seed 3; cached in
    .reco/bench-quality-generated) in tenant ``generated`` of <db>_quality, the jobs, then
    jobs.evaluate.evaluate(url, 'generated', users=0)."""
    from app.importer import import_csv
    from app.settings import get_settings
    from app.tools.demodata import ceiling_metrics, generate
    from jobs.evaluate import evaluate

    out = get_settings().data_dir / "bench-quality-generated"
    made = False
    ranks: list[np.ndarray] = []
    if not (out / "events.csv").is_file():
        log(f"generating {out}")
        generate(out, **GENERATED, ceiling=ranks)
        made = True
    elif not (out / "ceiling.json").is_file():  # files from before the ceiling: the same draws again
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp), **GENERATED, ceiling=ranks)
    if ranks:
        (out / "ceiling.json").write_text(json.dumps(ceiling_metrics(ranks)))
    ceiling = json.loads((out / "ceiling.json").read_text())
    url = quality_database(base_url, reuse=reuse or not fresh_database)
    import_seconds = None
    if not tenant_events(url, GENERATED_TENANT):
        with _connect(url) as conn:
            if tenant_events(url, GENERATED_TENANT) is None:
                conn.execute("SELECT reco.create_tenant(%s)", (GENERATED_TENANT,))
        t0 = time.perf_counter()
        for kind in ("features", "plans", "users", "events"):
            log(f"import {kind} [{GENERATED_TENANT}]")
            res = import_csv(url, kind, out / f"{kind}.csv", tenant=GENERATED_TENANT)
            if res.rejected:
                raise RuntimeError(f"import {kind}: {res.rejected} rows rejected ({res.reasons})")
        import_seconds = time.perf_counter() - t0
    jobs_seconds, _ = run_jobs(url, GENERATED_TENANT, log)
    seen: set[str] = set()

    def progress(step: str, done: int, total: int) -> None:
        if step not in seen:  # one line per preparation step and per model ranked
            seen.add(step)
            log(f"evaluate [{GENERATED_TENANT}]: {'rank ' if total else ''}{step}")

    res = evaluate(url, GENERATED_TENANT, users=0, progress=progress)
    return GeneratedResult(str(out), made, import_seconds, jobs_seconds, res.users, res.seconds, res.scores,
                           ceiling)
