"""`reco bench soak`, what happened and what it adds up to: each answer and outage as recorded, the
recovery after each restart, the figures (events accepted against stored, 503s for stored events,
5xx) and the report printed from them. Plain Python but for counting the stored events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

#: what the soak measures against (issue 13)
RECOVERY_TARGET_S = 2.0

# --------------------------------------------------------------------------------------------
# what happened
# --------------------------------------------------------------------------------------------

@dataclass
class Answer:
    kind: str          # read | write
    sent: float        # monotonic
    done: float
    status: int        # 0: no answer (connection lost)
    degraded: bool = False
    accepted: int = 0
    batch: int = -1    # index into Soak.batches (writes)
    nothing_stored: bool = False  # a 503 whose hint says "Nothing was stored"


@dataclass
class Outage:
    kind: str          # "stop/start" | "restart" | "crash"
    down_at: float     # monotonic: pg_ctl stop called
    stopped_at: float = 0.0
    back_at: float = 0.0  # pg_ctl start returned (the server accepts connections)


@dataclass
class Soak:
    answers: list[Answer] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)  # event ids of each batch sent
    outages: list[Outage] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# the figures
# --------------------------------------------------------------------------------------------

@dataclass
class Recovery:
    outage: Outage
    first_ok_read: float | None   # seconds after back_at: the first non-degraded 200 read answered after it
    last_bad_read: float | None   # seconds after back_at: the last read sent after it that was degraded or failed
    first_ok_write: float | None  # seconds after back_at: the first 2xx write answered after it
    down_reads: Counter = field(default_factory=Counter)  # answers to reads sent while the server was away

    def full(self) -> float | None:
        """Full recovery: the first non-degraded read after the database is back."""
        return self.first_ok_read


def recoveries(soak: Soak) -> list[Recovery]:
    out = []
    for i, o in enumerate(soak.outages):
        if not o.back_at:
            continue  # the run ended before the server was back
        nxt = soak.outages[i + 1].down_at if i + 1 < len(soak.outages) else float("inf")
        after = [a for a in soak.answers if o.back_at <= a.done < nxt]
        ok_reads = [a.done - o.back_at for a in after if a.kind == "read" and a.status == 200 and not a.degraded]
        bad_reads = [a.done - o.back_at for a in after
                     if a.kind == "read" and a.sent >= o.back_at and (a.status != 200 or a.degraded)]
        ok_writes = [a.done - o.back_at for a in after if a.kind == "write" and 200 <= a.status < 300]
        down = Counter("5xx" if a.status >= 500 else "degraded" if a.degraded else str(a.status)
                       for a in soak.answers if a.kind == "read" and o.down_at <= a.sent < o.back_at)
        out.append(Recovery(o, min(ok_reads, default=None), max(bad_reads, default=None),
                            min(ok_writes, default=None), down))
    return out


@dataclass
class Figures:
    seconds: float
    reads: Counter
    writes: Counter
    events_sent: int
    events_accepted: int        # sum of the 2xx answers' "accepted"
    events_stored: int          # in the database, of this run
    accepted_lost: int          # event ids of 2xx-answered batches not in the database
    refused_but_stored: int     # event ids of batches answered 503 "nothing was stored" that are in the database
    unsure_stored: int          # event ids of batches answered 503 "may or may not have been done" that are stored
    unsure_batches: int         # batches answered so
    unanswered_stored: int      # event ids of batches without an answer (connection lost) that are stored
    read_5xx: int
    write_5xx_not_503: int
    write_503: int
    recoveries: list[Recovery]
    errors: list[str]

    def ok(self) -> bool:
        return (self.accepted_lost == 0 and self.refused_but_stored == 0 and self.read_5xx == 0
                and self.write_5xx_not_503 == 0
                and all(r.full() is not None and r.full() <= RECOVERY_TARGET_S for r in self.recoveries))


def stored_ids(url: str, run: str) -> set[str]:
    """The event ids of this run that are in the database."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT event_id FROM reco.events WHERE event_id LIKE %s",
                                           (run + "-%",))}


def figures(soak: Soak, stored: set[str], seconds: float) -> Figures:
    """The figures of a run, given the event ids stored in the database."""
    reads = Counter()
    writes = Counter()
    accepted_ids: set[str] = set()
    refused_ids: set[str] = set()
    unsure_ids: set[str] = set()
    unsure = 0
    unanswered_ids: set[str] = set()
    accepted = 0
    for a in soak.answers:
        if a.kind == "read":
            reads["200 degraded" if a.status == 200 and a.degraded else str(a.status)] += 1
            continue
        writes[str(a.status)] += 1
        ids = soak.batches[a.batch]
        if 200 <= a.status < 300:
            accepted += a.accepted
            accepted_ids.update(ids)
        elif a.status == 503 and a.nothing_stored:
            refused_ids.update(ids)
        elif a.status == 503:
            unsure_ids.update(ids)
            unsure += 1
        elif a.status == 0:
            unanswered_ids.update(ids)
    return Figures(
        seconds=seconds, reads=reads, writes=writes,
        events_sent=sum(len(b) for b in soak.batches), events_accepted=accepted, events_stored=len(stored),
        accepted_lost=len(accepted_ids - stored), refused_but_stored=len(refused_ids & stored),
        unsure_stored=len(unsure_ids & stored), unsure_batches=unsure,
        unanswered_stored=len(unanswered_ids & stored),
        read_5xx=sum(n for s, n in reads.items() if s[0] == "5"),
        write_5xx_not_503=sum(n for s, n in writes.items() if s[0] == "5" and s != "503"),
        write_503=writes.get("503", 0), recoveries=recoveries(soak), errors=soak.errors)


def report(f: Figures, out: Callable[[str], None] = print) -> None:
    def secs(x: float | None) -> str:
        return "never" if x is None else f"{x:.2f} s"

    n_reads, n_writes = sum(f.reads.values()), sum(f.writes.values())
    out(f"soak: {f.seconds / 60:g} min, {n_reads:,} reads ({n_reads / f.seconds:.0f}/s), {n_writes:,} write batches "
        f"({f.events_sent:,} events)")
    out(f"  reads by answer: {dict(sorted(f.reads.items()))}")
    out(f"  writes by answer: {dict(sorted(f.writes.items()))}")
    out(f"  events accepted by the API (2xx 'accepted'): {f.events_accepted:,}; stored in the database: "
        f"{f.events_stored:,}")
    out(f"  accepted events lost: {f.accepted_lost:,} (target 0)")
    out(f"  events answered 503 'nothing was stored' that are stored: {f.refused_but_stored:,} (target 0); "
        f"batches answered 503 'may or may not have been done' (the connection died mid-statement): "
        f"{f.unsure_batches:,}, their events stored: {f.unsure_stored:,}; events without an answer that are "
        f"stored: {f.unanswered_stored:,}")
    out(f"  5xx: reads {f.read_5xx:,} (target 0), writes {f.write_503:,} x 503 (allowed while the database is away)"
        f" and {f.write_5xx_not_503:,} other 5xx (target 0)")
    for r in f.recoveries:
        o = r.outage
        out(f"  {o.kind}: database away {o.back_at - o.down_at:.1f} s (pg_ctl stop {o.stopped_at - o.down_at:.1f} s); "
            f"reads meanwhile {dict(r.down_reads)}; after it was back: first non-degraded read {secs(r.first_ok_read)}"
            f" (target <= {RECOVERY_TARGET_S:g} s), last degraded or failed read {secs(r.last_bad_read)}, "
            f"first stored write {secs(r.first_ok_write)}")
    for e in f.errors[:5]:
        out(f"  error: {e}")
    out("  verdict: " + ("all targets met" if f.ok() else "TARGETS MISSED"))
