"""`reco bench quality`: the RecBole split emulation, the metrics and the wheel reader (pure
Python), and one small load through the public SQL API (a database)."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest

from app.tools import quality as q
from app.tools import quality_data as qd

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"

# user a: 1 and 2 first, then 4 and 3 whose normalised times round to the same float32 (3 is
# one second earlier but comes later in the file, so it stays after 4: RecBole's stable sort on
# the float32 key); user b: two interactions (train, test); users z and c: one (train only).
INTER = HEADER + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in [
    ("a", "1", 5, 0),
    ("z", "9", 5, 1_000_000_000),
    ("a", "2", 4, 100),
    ("a", "4", 3, 800_000_001),
    ("a", "3", 3, 800_000_000),
    ("b", "1", 5, 200),
    ("b", "2", 5, 300),
    ("c", "5", 1, 400),
])


def test_sort_key_is_recboles_float32_normalisation():
    key = qd.sort_key(np.array([0, 100, 800_000_000, 800_000_001, 1_000_000_000], dtype=float))
    assert key.dtype == np.float32
    assert key[0] == 0 and key[-1] == 1 and 0 < key[1] < key[2]
    assert key[2] == key[3]  # one second apart, equal in float32
    assert (qd.sort_key(np.array([5.0, 5.0])) == 1).all()  # all equal: RecBole sets 1.0


def test_split_leave_last_two_out_with_a_float32_tie():
    s = qd.build_split(qd.parse_inter(INTER))
    assert s.train == {"a": ["1", "2"], "z": ["9"], "b": ["1"], "c": ["5"]}
    assert s.valid == {"a": "4"}
    assert s.test == {"a": "3", "b": "2"}  # a's test item is 3: the tie keeps the file order
    assert s.sizes() == {"users": 4, "train": 5, "valid": 1, "test": 2}
    assert s.times[("a", "3")] == 800_000_000
    # an exact sort on the integer times would have put 4 last
    exact = sorted([r for r in qd.parse_inter(INTER) if r[0] == "a"], key=lambda r: r[2])
    assert exact[-1][1] == "4"


def test_split_file_order_breaks_exact_ties():
    rows = qd.parse_inter(HEADER + "u\t7\t1\t50\nu\t8\t1\t50\nu\t6\t1\t50\nv\t1\t1\t10\n")
    s = qd.build_split(rows)
    assert (s.train["u"], s.valid["u"], s.test["u"]) == (["7"], "8", "6")


def test_metrics_hand_computed():
    test = {"u1": "a", "u2": "b", "u3": "c", "u4": "d"}
    rankings = {"u1": ["a", "x"], "u2": ["x", "y", "b"], "u3": [str(i) for i in range(10)] + ["c"]}
    m = qd.metrics(rankings, test)  # u4 has no ranking: a miss
    assert m.users == 4
    assert m.hit == pytest.approx(2 / 4)
    assert m.ndcg == pytest.approx((1 + 1 / math.log2(4)) / 4)  # rank 1 and rank 3
    assert m.mrr == pytest.approx((1 + 1 / 3) / 4)
    assert qd.rank_of(rankings["u3"], "c") == 0  # rank 11 is outside the top 10
    assert qd.served_list(["v", "a", "b"], "v", k=2) == ["a", "b"]
    assert qd.served_list([str(i) for i in range(11)], "99") == [str(i) for i in range(10)]


def test_popularity_masks_train_and_valid_ties_by_item_id():
    rows = qd.parse_inter(HEADER + "".join(f"{u}\t{i}\t1\t{t}\n" for u, i, t in [
        ("u", "10", 1), ("u", "2", 2), ("u", "3", 3), ("u", "4", 4),
        ("v", "2", 1), ("v", "10", 2), ("v", "5", 3), ("v", "3", 4),
        ("w", "3", 1), ("w", "4", 2), ("w", "5", 3),
    ]))
    s = qd.build_split(rows)
    assert s.train == {"u": ["10", "2"], "v": ["2", "10"], "w": ["3"]}
    assert (s.valid, s.test) == ({"u": "3", "v": "5", "w": "4"}, {"u": "4", "v": "3", "w": "5"})
    # train users per item: 2 -> 2, 10 -> 2, 3 -> 1, 4 and 5 -> 0; ties by numeric item id
    r = qd.popularity_rankings(s, k=3)
    assert r == {"u": ["4", "5"],          # 10, 2 (train) and 3 (valid) masked
                 "v": ["3", "4"],          # 2, 10 (train) and 5 (valid) masked
                 "w": ["2", "10", "5"]}    # 3 (train) and 4 (valid) masked
    m = qd.metrics(r, s.test)
    assert (m.hit, m.ndcg, m.mrr) == pytest.approx((1.0, (1 + 1 + 0.5) / 3, (1 + 1 + 1 / 3) / 3))


def _wheel(path, inter=INTER):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(qd.MEMBER.format("inter"), inter)
        zf.writestr(qd.MEMBER.format("item"), "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
                    "class:token_seq\n1\tToy Story\t1995\tAnimation Children's Comedy\n2\tunknown\t\tunknown\n"
                    "3\tHeat\t1995\tunknown Crime\n")
        zf.writestr(qd.MEMBER.format("user"), "user_id:token\tage:token\tgender:token\toccupation:token\t"
                    "zip_code:token\na\t24\tM\ttechnician\t85711\nb\t53\tF\tother\t94043\n")


def test_fetch_wheel_downloads_once_and_reads_the_zip(tmp_path):
    calls = []

    def fake_pip(cmd, **kw):
        calls.append(cmd)
        _wheel(tmp_path / qd.WHEEL)

    path, downloaded = qd.fetch_wheel(tmp_path, run=fake_pip)
    assert downloaded and calls[0][1:] == ["-m", "pip", "download", "--no-deps", "recbole==1.2.1",
                                           "-d", str(tmp_path)]
    assert qd.fetch_wheel(tmp_path, run=fake_pip) == (path, False) and len(calls) == 1
    data = qd.read_wheel(path)
    assert len(data.interactions) == 8 and data.interactions[3] == ("a", "4", 800_000_001.0)
    assert data.items["1"] == {"title": "Toy Story", "genres": ["Animation", "Children's", "Comedy"]}
    assert data.users["b"] == {"age": 53, "gender": "F", "occupation": "other"}
    rows = {r["feature_id"]: r for r in q.feature_rows(data)}
    assert rows["1"] == {"feature_id": "1", "name": "Toy Story", "category": "animation",
                         "tags": ["animation", "children's", "comedy"]}
    assert rows["2"]["category"] == "unknown" and rows["3"]["category"] == "crime"
    assert q.user_rows(data)[0] == {"user_id": "a", "attributes": {"occupation": "technician", "gender": "M",
                                                                   "age_band": "18-24"}}
    events = q.event_rows(qd.build_split(data.interactions))
    assert {"event_id": "a-2", "user_id": "a", "feature_id": "2", "occurred_at": 100} in events
    assert len(events) == 5  # train only


def test_model_options():
    assert q.model_options("hybrid") == {"exclude_seen": True, "explore": False}
    assert q.model_options("usercf")["weights"] == {"itemcf": 0, "usercf": 1, "prior": 0, "popularity": 0,
                                                    "session": 0, "explore": 0}


def test_load_and_measure_a_tiny_dataset(db_url, tmp_path):
    """6 users x 8 movies in two taste blocks, loaded through the JSON functions; the jobs; the
    metrics of each model equal those computed by hand from the lists served."""
    rows = []
    for u in range(1, 7):
        block = range(1, 5) if u <= 3 else range(5, 9)
        items = list(block)[u % 4:] + list(block)[:u % 4]
        rows += [(str(u), str(i), 4, 880_000_000 + 86_400 * j + u) for j, i in enumerate(items)]
    inter = HEADER + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    genres = ["Action"] * 4 + ["Drama"] * 4
    data = qd.Dataset(qd.parse_inter(inter),
                     {str(i): {"title": f"Movie {i}", "genres": [genres[i - 1]]} for i in range(1, 9)},
                     {str(u): {"age": 20 + u, "gender": "MF"[u % 2], "occupation": "student"} for u in range(1, 7)})
    split = qd.build_split(data.interactions)
    assert split.sizes() == {"users": 6, "train": 12, "valid": 6, "test": 6}
    stats = q.load(db_url, data, split)
    assert (stats.features, stats.users, stats.events) == (8, 6, 12)
    assert q.tenant_events(db_url, q.TENANT) == 12
    q.run_jobs(db_url, q.TENANT)
    measured = q.measure(db_url, split)
    assert set(measured.scores) == {"hybrid", "itemcf", "usercf", "prior", "popularity"}
    assert len(measured.latencies_ms) == 5 * 6
    for model, ranking in measured.rankings.items():
        ndcg = hit = mrr = 0.0
        for user, item in split.test.items():
            top = ranking[user]
            assert len(top) <= 10 and not set(top) & set(split.train[user]), (model, user, top)
            assert split.valid[user] not in top
            if item in top:
                r = top.index(item) + 1
                hit, ndcg, mrr = hit + 1, ndcg + 1 / math.log2(r + 1), mrr + 1 / r
        s = measured.scores[model]
        assert (s.hit, s.ndcg, s.mrr) == pytest.approx((hit / 6, ndcg / 6, mrr / 6)), model
    # 8 movies, 2 seen and the validation item dropped: every list holds the other 5, test included
    assert measured.scores["hybrid"].hit == 1.0
