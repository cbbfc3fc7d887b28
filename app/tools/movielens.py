"""MovieLens 100K (https://grouplens.org/datasets/movielens/100k/) as pgreco CSV files, so the
recommender can be evaluated on a public dataset (`reco convert movielens`).

- u.item -> features.csv: the movie id, its title, the first of its genres as the category and
  all of them as tags;
- u.user -> users.csv: occupation, gender and an age band as attributes;
- u.data -> events.csv: every rating is a use at its timestamp, a success when rated 4 or 5.

Two layouts are read: GroupLens' original files (``u.data``, ``u.item``, ``u.user``) and RecBole's
atomic files (``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user``: tab-separated, a header of
``name:type`` fields), which is what the recbole wheel behind ``reco bench quality`` holds.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]
AGE_BANDS = [(18, "under-18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (56, "45-55"), (200, "56+")]


def age_band(age: int) -> str:
    return next(label for upper, label in AGE_BANDS if age < upper)


def atomic_records(text: str) -> Iterator[dict[str, str]]:
    """Rows of a RecBole atomic file (tab-separated; header ``name:type``) as dicts by field name."""
    lines = text.splitlines()
    if not lines:
        return
    names = [h.split(":", 1)[0] for h in lines[0].split("\t")]
    for line in lines[1:]:
        if line.strip():
            values = line.split("\t")
            yield dict(zip(names, values + [""] * (len(names) - len(values)), strict=False))


def _atomic_files(src: Path) -> tuple[Path, Path, Path] | None:
    """RecBole's ``<name>.inter``, ``.item`` and ``.user`` in ``src``, if there is one set."""
    for inter in sorted(src.glob("*.inter")):
        item, user = inter.with_suffix(".item"), inter.with_suffix(".user")
        if item.is_file() and user.is_file():
            return inter, item, user
    return None


def convert(src: Path, out: Path) -> dict[str, int]:
    """Write users.csv, features.csv and events.csv to ``out`` from the ml-100k folder ``src``
    (GroupLens' ``u.*`` files or RecBole's atomic files)."""
    src, out = Path(src), Path(out)
    original = [src / name for name in ("u.item", "u.user", "u.data")]
    if not all(p.is_file() for p in original):
        atomic = _atomic_files(src)
        if atomic is None:
            missing = ", ".join(p.name for p in original if not p.is_file())
            raise FileNotFoundError(
                f"{src}: neither GroupLens' ml-100k files (missing {missing}) nor RecBole's atomic files "
                f"(ml-100k.inter, .item, .user): point at the unpacked ml-100k folder")
        return _convert_atomic(*atomic, out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    with (src / "u.item").open(encoding="latin-1", newline="") as fh, \
            (out / "features.csv").open("w", newline="") as w:
        writer = csv.writer(w, lineterminator="\n")
        writer.writerow(["feature_id", "name", "category", "tags", "description"])
        n = 0
        for row in csv.reader(fh, delimiter="|"):
            if not row:
                continue
            genres = [g for g, flag in zip(GENRES, row[5:24], strict=True) if flag == "1"]
            main = next((g for g in genres if g != "unknown"), "unknown")
            writer.writerow([row[0], row[1], main.lower(), "|".join(g.lower() for g in genres),
                             f"Released {row[2]}" if row[2] else ""])
            n += 1
        counts["features"] = n
    with (src / "u.user").open(encoding="latin-1", newline="") as fh, \
            (out / "users.csv").open("w", newline="") as w:
        writer = csv.writer(w, lineterminator="\n")
        writer.writerow(["user_id", "paid", "occupation", "gender", "age_band"])
        n = 0
        for row in csv.reader(fh, delimiter="|"):
            if row:
                writer.writerow([row[0], "false", row[3], row[2], age_band(int(row[1]))])
                n += 1
        counts["users"] = n
    with (src / "u.data").open(encoding="latin-1", newline="") as fh, \
            (out / "events.csv").open("w", newline="") as w:
        writer = csv.writer(w, lineterminator="\n")
        writer.writerow(["event_id", "user_id", "feature_id", "occurred_at", "kind", "success"])
        n = 0
        for row in csv.reader(fh, delimiter="\t"):
            if row:
                user, item, rating, ts = row[:4]
                writer.writerow([f"r{user}-{item}", user, item, ts, "use", "true" if int(rating) >= 4 else "false"])
                n += 1
        counts["events"] = n
    return counts


def _convert_atomic(inter: Path, item: Path, user: Path, out: Path) -> dict[str, int]:
    """The same three CSV files from RecBole's atomic files (genres in ``class``, space-separated)."""
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    with (out / "features.csv").open("w", newline="") as w:
        writer = csv.writer(w, lineterminator="\n")
        writer.writerow(["feature_id", "name", "category", "tags", "description"])
        n = 0
        for r in atomic_records(item.read_text(encoding="utf-8")):
            genres = (r.get("class") or "").split()
            main = next((g for g in genres if g != "unknown"), "unknown")
            year = r.get("release_year", "")
            writer.writerow([r["item_id"], r.get("movie_title", ""), main.lower(),
                             "|".join(g.lower() for g in genres), f"Released {year}" if year else ""])
            n += 1
        counts["features"] = n
    with (out / "users.csv").open("w", newline="") as w:
        writer = csv.writer(w, lineterminator="\n")
        writer.writerow(["user_id", "paid", "occupation", "gender", "age_band"])
        n = 0
        for r in atomic_records(user.read_text(encoding="utf-8")):
            writer.writerow([r["user_id"], "false", r["occupation"], r["gender"], age_band(int(float(r["age"])))])
            n += 1
        counts["users"] = n
    with (out / "events.csv").open("w", newline="") as w:
        writer = csv.writer(w, lineterminator="\n")
        writer.writerow(["event_id", "user_id", "feature_id", "occurred_at", "kind", "success"])
        n = 0
        for r in atomic_records(inter.read_text(encoding="utf-8")):
            u, i = r["user_id"], r["item_id"]
            writer.writerow([f"r{u}-{i}", u, i, int(float(r["timestamp"])), "use",
                             "true" if float(r["rating"]) >= 4 else "false"])
            n += 1
        counts["events"] = n
    return counts
