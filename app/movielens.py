"""MovieLens 100K (https://grouplens.org/datasets/movielens/100k/) as pgreco CSV files, so the
recommender can be evaluated on a public dataset (`reco convert movielens`).

- u.item -> features.csv: the movie id, its title, the first of its genres as the category and
  all of them as tags;
- u.user -> users.csv: occupation, gender and an age band as attributes;
- u.data -> events.csv: every rating is a use at its timestamp, a success when rated 4 or 5.
"""

from __future__ import annotations

import csv
from pathlib import Path

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
          "War", "Western"]
AGE_BANDS = [(18, "under-18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (56, "45-55"), (200, "56+")]


def age_band(age: int) -> str:
    return next(label for upper, label in AGE_BANDS if age < upper)


def convert(src: Path, out: Path) -> dict[str, int]:
    """Write users.csv, features.csv and events.csv to ``out`` from the ml-100k folder ``src``."""
    src, out = Path(src), Path(out)
    for name in ("u.item", "u.user", "u.data"):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src / name} not found: point at the unpacked ml-100k folder")
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
