"""Just enough of cron's 5-field syntax for `reco jobs loop` (minute hour day month weekday;
`*`, numbers, lists `a,b`, ranges `a-b` and steps `*/n`, `a-b/n`)."""

from __future__ import annotations

from datetime import datetime, timedelta

RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


def _field(spec: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for part in spec.split(","):
        rng, _, step = part.partition("/")
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a, b = (int(x) for x in rng.split("-"))
        else:
            a = b = int(rng)
        if not (lo <= a <= hi and lo <= b <= hi):
            raise ValueError(f"cron field {spec!r} out of range {lo}-{hi}")
        values.update(range(a, b + 1, int(step) if step else 1))
    return values


def parse(schedule: str) -> list[set[int]]:
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"cron schedule needs 5 fields, got {schedule!r}")
    sets = [_field(f, lo, hi) for f, (lo, hi) in zip(fields, RANGES, strict=True)]
    sets[4] = {d % 7 for d in sets[4]}
    return sets


def next_run(schedule: str, after: datetime) -> datetime:
    """The first minute strictly after ``after`` that matches the schedule."""
    minute, hour, day, month, weekday = parse(schedule)
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(366 * 24 * 60):
        if (t.minute in minute and t.hour in hour and t.day in day and t.month in month
                and (t.isoweekday() % 7) in weekday):
            return t
        t += timedelta(minutes=1)
    raise ValueError(f"cron schedule {schedule!r} never fires")
