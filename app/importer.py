"""`reco import`: CSV files into users, features, plans or events.

The file is streamed into an unlogged staging table with COPY (one text column per file
column), then merged in chunks by ``reco.import_staged`` — the same checks as the JSON ingest
functions — on several connections at once (chunks are independent: ingest is idempotent and
takes its row locks in key order). The staging table is dropped at the end. Rejected rows go
to ``<file>.rejected.csv`` next to the input, with their reasons.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

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
COPY_BLOCK = 1 << 20


class ImportFileError(ValueError):
    """A problem with the file or the options (not with single rows)."""


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
    analyzed: list[str] = field(default_factory=list)

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
    with path.open(newline="", encoding=encoding) as fh:
        header = next(csv.reader(fh, delimiter=delimiter), None)
    if not header:
        raise ImportFileError(f"{path} is empty")
    return [h.strip() for h in header]


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
    chunk_rows: int = 50_000,
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
    result = ImportResult(kind)
    t0 = time.perf_counter()
    stage_name = f"_stage_{uuid.uuid4().hex[:12]}"
    stage = sql.Identifier("reco", stage_name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE UNLOGGED TABLE {} (line bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {})"
        ).format(stage, sql.SQL(", ").join(
            sql.SQL("{} text").format(sql.Identifier(c)) for c in file_columns)))
        try:
            result.rows = _copy(conn, stage, path, file_columns, has_header, delimiter, encoding,
                                progress)
            rejected = _merge(url, kind, f"reco.{stage_name}", target_columns, tenant, result, chunk_rows,
                              workers, progress)
            result.rejected = len(rejected)
            if result.accepted:
                # a bulk write: fresh statistics before anything reads the new rows (autovacuum
                # may take minutes, and a plan made for an empty table nests loops over all of them)
                result.analyzed = conn.execute("SELECT reco.analyze_imported(%s)", (kind,)).fetchone()[0]
            if rejected:
                result.rejected_file = _write_rejected(conn, stage, path, file_columns, rejected,
                                                       has_header, delimiter)
                for _, fld, _reason in rejected:
                    result.reasons[fld] = result.reasons.get(fld, 0) + 1
        finally:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
    result.seconds = time.perf_counter() - t0
    return result


def _copy(conn, stage, path: Path, file_columns, has_header: bool, delimiter: str,
          encoding: str, progress: Progress) -> int:
    copy_sql = sql.SQL(
        "COPY {} ({}) FROM STDIN (FORMAT csv, HEADER {}, DELIMITER {}, ENCODING {})"
    ).format(stage, sql.SQL(", ").join(map(sql.Identifier, file_columns)),
             sql.Literal(has_header), sql.Literal(delimiter), sql.Literal(_pg_encoding(encoding)))
    progress.start("copy", path.stat().st_size)
    try:
        with conn.cursor().copy(copy_sql) as copy, path.open("rb") as fh:
            while block := fh.read(COPY_BLOCK):
                copy.write(block)
                progress.advance("copy", len(block))
    except (psycopg.errors.DataError, psycopg.errors.BadCopyFileFormat) as exc:
        # malformed CSV: wrong number of columns, bad quoting, bad encoding
        raise ImportFileError(f"{path}: {exc.diag.message_primary} ({exc.diag.context or ''})") from exc
    conn.execute(sql.SQL("ANALYZE {}").format(stage))
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(stage)).fetchone()[0]


def _merge(url: str, kind: str, stage_name: str, target_columns: dict[str, str], tenant: str | None,
           result: ImportResult, chunk_rows: int, workers: int,
           progress: Progress) -> list[tuple[int, str, str]]:
    """Merge the staged rows chunk by chunk, each chunk in its own transaction."""
    chunks = [(lo, min(lo + chunk_rows - 1, result.rows))
              for lo in range(1, result.rows + 1, chunk_rows)]
    rejected: list[tuple[int, str, str]] = []
    lock = threading.Lock()
    local = threading.local()
    connections: list[psycopg.Connection] = []
    progress.start("merge", result.rows)

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
            rejected.extend((r["index"], r["field"], r["reason"]) for r in report["rejected"])
            progress.advance("merge", hi - lo + 1)

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for future in [pool.submit(run, c) for c in chunks]:
                future.result()
    finally:
        for c in connections:
            c.close()
    rejected.sort()
    return rejected


def _write_rejected(conn, stage, path: Path, file_columns: list[str], rejected,
                    has_header: bool, delimiter: str) -> Path:
    out = path.with_name(path.name + ".rejected.csv")
    by_line = {line: (fld, reason) for line, fld, reason in rejected}
    cols = sql.SQL(", ").join(map(sql.Identifier, file_columns))
    cur = conn.execute(
        sql.SQL("SELECT line, {} FROM {} WHERE line = ANY(%s) ORDER BY line").format(cols, stage),
        (list(by_line),),
    )
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(["file_line", "field", "reason", *file_columns])
    for rec in cur:
        line, *values = rec
        fld, reason = by_line[line]
        writer.writerow([line + (1 if has_header else 0), fld, reason, *values])
    out.write_text(buf.getvalue())
    return out


def _pg_encoding(encoding: str) -> str:
    e = encoding.lower().replace("-", "").replace("_", "")
    return {"utf8": "UTF8", "latin1": "LATIN1", "iso88591": "LATIN1", "cp1252": "WIN1252"}.get(e, encoding)
