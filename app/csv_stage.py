"""The CSV file of `reco import` into its staging table (app/importer.py merges it from there), and
the rejects file written next to the input.

PostgreSQL's COPY reads the file first, for speed. Malformed lines (too many or too few fields, an
unterminated quote, bytes that are not in the file's encoding, NUL characters) make it refuse the
whole file: then the file is read again in Python, well-formed records are staged and each malformed
one is set aside with its line number and reason (field ``csv`` in the rejects file).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from app.importer import Progress

COPY_BLOCK = 1 << 20
#: The ``field`` of a rejected malformed line (its reason says what is wrong with it).
MALFORMED = "csv"
#: A malformed record: its ``line`` (first physical line, less the header), the reason, its fields.
Malformed = tuple[int, str, list[str]]


def stage_file(conn, stage, path: Path, file_columns, has_header: bool, delimiter: str,
          encoding: str, progress: Progress) -> tuple[int, int, list[Malformed]]:
    """Stage the file; returns (rows staged, highest line number, malformed records).

    PostgreSQL's CSV parser first, for speed; if it refuses the file (a malformed line aborts
    the whole COPY), the file is parsed again in Python, record by record.
    """
    copy_sql = sql.SQL(
        "COPY {} ({}) FROM STDIN (FORMAT csv, HEADER {}, DELIMITER {}, ENCODING {})"
    ).format(stage, sql.SQL(", ").join(map(sql.Identifier, file_columns)),
             sql.Literal(has_header), sql.Literal(delimiter), sql.Literal(_pg_encoding(encoding)))
    size = path.stat().st_size
    progress.start("copy", size)
    sent = 0
    malformed: list[Malformed] = []
    try:
        with conn.cursor().copy(copy_sql) as copy, path.open("rb") as fh:
            while block := fh.read(COPY_BLOCK):
                copy.write(block)
                sent += len(block)
                progress.advance("copy", len(block))
    except (psycopg.errors.DataError, psycopg.errors.BadCopyFileFormat):
        # malformed CSV (wrong number of columns, bad quoting, bad encoding): the COPY rolled
        # back; read it again line by line, setting the bad records aside
        progress.advance("copy", -sent)
        malformed = _copy_checked(conn, stage, path, file_columns, has_header, delimiter, encoding,
                                  progress)
    conn.execute(sql.SQL("ANALYZE {}").format(stage))
    staged, last_line = conn.execute(
        sql.SQL("SELECT count(*), coalesce(max(line), 0) FROM {}").format(stage)).fetchone()
    return staged, last_line, malformed


def _copy_checked(conn, stage, path: Path, file_columns: list[str], has_header: bool,
                  delimiter: str, encoding: str, progress: Progress) -> list[Malformed]:
    """Parse the file in Python; COPY its well-formed records, return the malformed ones.

    A record's ``line`` is its first physical line, less the header line (so that
    ``file_line`` in the rejects file is right even after quoted multi-line fields); empty
    fields are NULL (not given), as PostgreSQL reads unquoted empty CSV fields; blank lines are
    skipped.
    """
    n_fields = len(file_columns)
    offset = 1 if has_header else 0
    malformed: list[Malformed] = []
    bad_lines: dict[int, str] = {}  # physical line -> why it cannot be read
    state = {"line": 0, "bytes": 0, "pos": 0}  # physical lines and bytes read; bytes not yet reported

    def lines():
        with path.open("rb") as fh:
            for raw in fh:
                state["line"] += 1
                state["pos"] += len(raw)
                state["bytes"] += len(raw)
                if state["bytes"] >= COPY_BLOCK:
                    progress.advance("copy", state["bytes"])
                    state["bytes"] = 0
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as exc:
                    bad_lines[state["line"]] = f"not valid {encoding} (byte {exc.start + 1} of the line)"
                    text = raw.decode(encoding, "replace")
                if "\0" in text:
                    bad_lines.setdefault(state["line"], "contains a NUL character")
                    text = text.replace("\0", "")
                yield text

    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, min(sys.maxsize, 1 << 30)))  # COPY has no 128 kB field limit
    copy_sql = sql.SQL("COPY {} (line, {}) FROM STDIN").format(
        stage, sql.SQL(", ").join(map(sql.Identifier, file_columns)))
    try:
        with conn.cursor().copy(copy_sql) as copy:
            def stage_row(start: int, record: list[str]) -> None:
                copy.write_row([start - offset, *[v if v != "" else None for v in record]])

            reader = csv.reader(lines(), delimiter=delimiter)
            # the last good record is held back by one: it may end inside an unterminated quote
            pending: tuple[int, list[str]] | None = None
            pending_pos = 0  # its byte offset in the file
            first = final = 1
            first_pos = 0  # byte offset of line `first` (the reader never reads past a record)
            header_seen = not has_header
            while True:
                try:
                    record = next(reader)
                    error = None
                except StopIteration:
                    break
                except csv.Error as exc:
                    record, error = None, str(exc)
                last = reader.line_num
                start, first = first, last + 1
                start_pos, first_pos = first_pos, state["pos"]
                if not header_seen:
                    header_seen = True
                    continue
                if record == [] and error is None:
                    continue  # a blank line
                why = error or next((bad_lines[n] for n in range(start, last + 1) if n in bad_lines), None)
                if why is None and len(record) != n_fields:
                    why = (f"{len(record)} fields, expected {n_fields}"
                           + (" (a quoted field runs over line ends: an unterminated quote?)"
                              if last > start else ""))
                if why is not None:
                    malformed.append((start - offset, why, record or []))
                    final = start
                    continue
                if pending is not None:
                    stage_row(*pending)
                pending, pending_pos, final = (start, record), start_pos, start
            if pending is not None:
                if pending[0] == final and _unterminated(path, pending_pos, delimiter, encoding):
                    malformed.append((pending[0] - offset, "unterminated quoted field at the end of the file",
                                      pending[1]))
                else:
                    stage_row(*pending)
    finally:
        csv.field_size_limit(limit)
    progress.advance("copy", state["bytes"])
    malformed.sort(key=lambda m: m[0])
    return malformed


def _unterminated(path: Path, pos: int, delimiter: str, encoding: str) -> bool:
    """Whether the file's last record, from byte ``pos``, ends inside a quoted field.

    Python's lenient CSV reader returns such a record as if closed; PostgreSQL refuses it.
    """
    with path.open("rb") as fh:
        fh.seek(pos)
        tail = [raw.decode(encoding, "replace") for raw in fh]
    try:
        for _ in csv.reader(tail, delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def write_rejected(conn, stage, path: Path, file_columns: list[str], rejected,
                    malformed: list[Malformed], has_header: bool, delimiter: str) -> Path:
    """``<file>.rejected.csv``: file_line, field, reason, then the record's fields as in the file."""
    out = path.with_name(path.name + ".rejected.csv")
    by_line = {line: (fld, reason) for line, fld, reason in rejected if fld != MALFORMED}
    cols = sql.SQL(", ").join(map(sql.Identifier, file_columns))
    cur = conn.execute(
        sql.SQL("SELECT line, {} FROM {} WHERE line = ANY(%s) ORDER BY line").format(cols, stage),
        (list(by_line),),
    )
    rows = [(line, *by_line[line], values) for line, *values in cur]
    rows += [(line, MALFORMED, reason, values) for line, reason, values in malformed]
    rows.sort(key=lambda r: r[0])
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter)
    writer.writerow(["file_line", "field", "reason", *file_columns])
    for line, fld, reason, values in rows:
        writer.writerow([line + (1 if has_header else 0), fld, reason, *values])
    out.write_text(buf.getvalue())
    return out


def _pg_encoding(encoding: str) -> str:
    e = encoding.lower().replace("-", "").replace("_", "")
    return {"utf8": "UTF8", "latin1": "LATIN1", "iso88591": "LATIN1", "cp1252": "WIN1252"}.get(e, encoding)
