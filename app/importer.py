"""`reco import`: CSV files into users, features, plans or events.

The file is streamed into an unlogged staging table with COPY (one text column per file
column), then merged in chunks by ``reco.import_staged`` — the same checks as the JSON ingest
functions — on several connections at once (chunks are independent: ingest is idempotent and
takes its row locks in key order). The staging table is dropped at the end; one left by an
import that died (killed, connection lost) is dropped by the next import
(``reco.create_import_stage``). Rejected rows go to ``<file>.rejected.csv`` next to the
input, with their reasons.

Malformed lines (too many or too few fields, an unterminated quote, bytes that are not in the
file's encoding, NUL characters) make PostgreSQL's COPY refuse the whole file. Then the file
is read again in Python: well-formed records are staged, each malformed one goes to the
rejects file with its line number and reason (field ``csv``), and the import goes on. The
staging and the rejects file: app/csv_stage.py.

Header names lose a RecBole type suffix (``age:token`` is the column ``age``), so RecBole's atomic
files import with ``--delimiter tab``. A users file none of whose attribute columns is in the
setting ``segment_attributes`` gets a warning: every user would fall into one segment.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from app.csv_stage import MALFORMED, stage_file, write_rejected

#: Target fields per kind; the first ones listed in REQUIRED must be mapped.
FIELDS: dict[str, tuple[str, ...]] = {
    "events": ("event_id", "user_id", "feature_id", "occurred_at", "kind", "success"),
    "users": ("user_id", "paid"),
    "features": ("feature_id", "name", "category", "requires_paid", "tags", "description", "active"),
    "plans": ("plan_id", "name", "price", "quota", "overage_price", "includes_paid_features", "active"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "events": ("user_id", "feature_id", "occurred_at"),
    "users": ("user_id",),
    "features": ("feature_id",),
    "plans": ("plan_id", "price"),
}
DELIMITERS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
#: staged rows merged per transaction (one chunk: the unit a Ctrl-C loses)
CHUNK_ROWS = 50_000
#: RecBole's atomic-file header fields, ``name:type``: the name is the column
RECBOLE_TYPE = re.compile(r"^(?P<name>.+):(?:token|token_seq|float|float_seq)$")


class ImportFileError(ValueError):
    """A problem with the file or the options (not with single rows)."""


class ImportInterrupted(KeyboardInterrupt):
    """Ctrl-C during an import: the chunks merged so far are stored (``result``), the rest not.

    Running the same import again finishes it: ingest is idempotent."""

    def __init__(self, result: ImportResult, total: int) -> None:
        super().__init__()
        self.result, self.total = result, total


@dataclass
class ImportResult:
    kind: str
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_file: Path | None = None
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    merged: int = 0  # staged rows whose chunk was merged (committed)
    analyzed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class Progress:
    """Callbacks for a progress display: total and advance, per phase ('copy' in bytes, 'merge' in rows)."""

    start: Callable[[str, int], None] = lambda phase, total: None
    advance: Callable[[str, int], None] = lambda phase, n: None


def parse_delimiter(value: str) -> str:
    d = DELIMITERS.get(value, value)
    if len(d) != 1:
        raise ImportFileError(f"delimiter must be one character (or tab/comma/semicolon/pipe), got {value!r}")
    return d


def read_header(path: Path, delimiter: str, encoding: str) -> list[str]:
    try:
        "".encode(encoding)
    except LookupError as exc:
        raise ImportFileError(f"unknown encoding {encoding!r}") from exc

    def lines():  # line by line: a bad byte further down is a row's problem, not the header's
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    yield raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise ImportFileError(f"{path}, line {n} (header): not valid {encoding}") from exc

    header = next(csv.reader(lines(), delimiter=delimiter), None)
    if not header:
        raise ImportFileError(f"{path} is empty")
    return [strip_type(h.strip()) for h in header]


def strip_type(column: str) -> str:
    """``age:token`` -> ``age`` (RecBole's atomic files type every header field); others as they are."""
    m = RECBOLE_TYPE.match(column)
    return m["name"] if m else column


def resolve_columns(kind: str, file_columns: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """Target field -> file column: same-named columns, overridden by ``mapping``."""
    if kind not in FIELDS:
        raise ImportFileError(f"unknown kind {kind!r}; use one of {', '.join(FIELDS)}")
    if len(set(file_columns)) != len(file_columns):
        dupes = sorted({c for c in file_columns if file_columns.count(c) > 1})
        raise ImportFileError(f"duplicate column names: {', '.join(dupes)}")
    columns = {f: f for f in FIELDS[kind] if f in file_columns}
    for target, source in mapping.items():
        if target not in FIELDS[kind]:
            raise ImportFileError(f"--map {target}=...: {kind} have no field {target!r} "
                               f"(fields: {', '.join(FIELDS[kind])})")
        source = source if source in file_columns else strip_type(source)
        if source not in file_columns:
            raise ImportFileError(f"--map {target}={source}: no column {source!r} in the file "
                               f"(columns: {', '.join(file_columns)})")
        columns[target] = source
    missing = [f for f in REQUIRED[kind] if f not in columns]
    if missing:
        raise ImportFileError(
            f"the file has no column for {', '.join(missing)} (columns: {', '.join(file_columns)}); "
            f"rename it or use --map {missing[0]}=COLUMN")
    return columns


def import_csv(
    url: str,
    kind: str,
    path: Path,
    *,
    delimiter: str = ",",
    columns: list[str] | None = None,
    mapping: dict[str, str] | None = None,
    encoding: str = "utf-8",
    tenant: str | None = None,
    chunk_rows: int | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Import one CSV file. ``columns`` names the columns of a file without a header row."""
    progress = progress or Progress()
    path = Path(path)
    if not path.is_file():
        raise ImportFileError(f"no such file: {path}")
    has_header = columns is None
    file_columns = read_header(path, delimiter, encoding) if has_header else list(columns or [])
    target_columns = resolve_columns(kind, file_columns, mapping or {})
    workers = workers or min(2, os.cpu_count() or 1)
    chunk_rows = chunk_rows or CHUNK_ROWS
    result = ImportResult(kind)
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        # drops the stale staging of imports that died, then makes ours, locked to this session
        stage_name = conn.execute("SELECT reco.create_import_stage(%s)", (file_columns,)).fetchone()[0]
        stage = sql.Identifier("reco", stage_name)
        staged = 0
        try:
            staged, last_line, malformed = stage_file(conn, stage, path, file_columns, has_header,
                                                 delimiter, encoding, progress)
            result.rows = staged + len(malformed)
            rejected = _merge(url, kind, f"reco.{stage_name}", target_columns, tenant, result, last_line,
                              chunk_rows, workers, progress)
            rejected += [(line, MALFORMED, reason) for line, reason, _values in malformed]
            rejected.sort()
            result.rejected = len(rejected)
            if kind == "users":
                result.warnings += segment_warnings(conn, file_columns, target_columns, tenant)
            if result.accepted:
                # a bulk write: fresh statistics before anything reads the new rows (autovacuum
                # may take minutes, and a plan made for an empty table nests loops over all of them)
                result.analyzed = conn.execute("SELECT reco.analyze_imported(%s)", (kind,)).fetchone()[0]
            if rejected:
                result.rejected_file = write_rejected(conn, stage, path, file_columns, rejected,
                                                       malformed, has_header, delimiter)
                for _, fld, _reason in rejected:
                    result.reasons[fld] = result.reasons.get(fld, 0) + 1
        except KeyboardInterrupt:
            result.seconds = time.perf_counter() - t0
            raise ImportInterrupted(result, staged) from None
        finally:
            if not conn.broken and not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT reco.drop_import_stage(%s)", (stage_name,))
    result.seconds = time.perf_counter() - t0
    return result


def segment_warnings(conn, file_columns: list[str], target_columns: dict[str, str],
                     tenant: str | None) -> list[str]:
    """A warning when a users file has attribute columns but none is a segment attribute."""
    attributes = [c for c in file_columns if c not in target_columns.values()]
    row = conn.execute(
        "SELECT value FROM reco.effective_settings WHERE key = 'segment_attributes' AND tenant = "
        "coalesce(%s, nullif(current_setting('reco.tenant', true), ''), 'default')", (tenant,)).fetchone()
    names = [n for n in (row[0] if row else []) if n != "paid"]
    if not attributes or set(attributes) & set(names):
        return []
    example = ", ".join(f'"{a}"' for a in attributes[:3])
    return [f"no attribute column ({', '.join(attributes)}) is in the setting segment_attributes "
            f"({', '.join(names) or 'none but paid'}): every user falls into one segment. Set it, e.g. "
            f"SELECT reco.set_setting('segment_attributes', '[{example}]'"
            + (f", '{tenant}'" if tenant else "") + ");"]


def _merge(url: str, kind: str, stage_name: str, target_columns: dict[str, str], tenant: str | None,
           result: ImportResult, last_line: int, chunk_rows: int, workers: int,
           progress: Progress) -> list[tuple[int, str, str]]:
    """Merge the staged rows chunk by chunk (ranges of ``line``), each chunk in its own transaction."""
    chunks = [(lo, min(lo + chunk_rows - 1, last_line))
              for lo in range(1, last_line + 1, chunk_rows)]
    rejected: list[tuple[int, str, str]] = []
    lock = threading.Lock()
    local = threading.local()
    connections: list[psycopg.Connection] = []
    progress.start("merge", last_line)

    def run(chunk: tuple[int, int]) -> None:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(url, autocommit=True)
            with lock:
                connections.append(local.conn)
        lo, hi = chunk
        for attempt in range(5):
            try:
                report = local.conn.execute(
                    "SELECT reco.import_staged(%s, %s::regclass, %s::jsonb, %s, %s, %s)",
                    (kind, stage_name, psycopg.types.json.Jsonb(target_columns), lo, hi, tenant),
                ).fetchone()[0]
                break
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))  # the chunk rolled back; ingest is idempotent
        with lock:
            result.accepted += report["accepted"]
            result.duplicates += report["duplicates"]
            result.merged += hi - lo + 1
            rejected.extend((r["index"], r["field"], r["reason"]) for r in report["rejected"])
            progress.advance("merge", hi - lo + 1)

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        for future in [pool.submit(run, c) for c in chunks]:
            future.result()
    except BaseException:
        # Ctrl-C (or a failed chunk): start no more chunks, cancel the running ones (each
        # rolls back whole), then wait for the workers, which no longer have anything to do
        pool.shutdown(wait=False, cancel_futures=True)
        with lock:
            running = list(connections)
        for c in running:
            with contextlib.suppress(psycopg.Error):
                c.cancel_safe()
        pool.shutdown(wait=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        for c in connections:
            c.close()
    rejected.sort()
    return rejected
