"""Fusion against values computed by hand: RRF (weighted, cut lists, union) and score fusion."""

from __future__ import annotations

import math

import pytest

from rag.core.errors import ConfigError
from rag.core.types import Chunk, Hit
from rag.fuse.rrf import ReciprocalRankFusion
from rag.fuse.score import ScoreFusion, normalize


def hits(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(Chunk(i, f"{i}.txt", f"text {i}", 0, 6), s) for i, s in pairs]


def ranked(result: dict[str, list[Hit]]) -> list[tuple[str, float]]:
    return [(h.id, h.score) for h in result["hits"]]


A = hits(("a", 9.0), ("b", 5.0), ("c", 1.0))
B = hits(("c", 0.9), ("d", 0.8))


@pytest.mark.parametrize("fusion", [ReciprocalRankFusion(), ScoreFusion(method="zscore")])
def test_one_list_comes_back_unchanged(fusion) -> None:  # type: ignore[no-untyped-def]
    assert ranked(fusion.run(hits=[A])) == [("a", 9.0), ("b", 5.0), ("c", 1.0)]
    assert ranked(fusion.run(hits=[A], top_k=2)) == [("a", 9.0), ("b", 5.0)]


def test_rrf_overlapping_lists_by_hand() -> None:
    result = ranked(ReciprocalRankFusion(k=60).run(hits=[A, B]))
    expected = {"a": 1 / 61, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62}
    assert [i for i, _ in result] == ["c", "a", "b", "d"]  # b and d tie: b's best rank 2 = d's; then by id
    for chunk_id, score in result:
        assert score == pytest.approx(expected[chunk_id])


def test_rrf_disjoint_lists_interleave_deterministically() -> None:
    result = ranked(ReciprocalRankFusion(k=0).run(hits=[hits(("x", 1), ("y", 1)), hits(("p", 1), ("q", 1))]))
    assert result == [("p", 1.0), ("x", 1.0), ("q", 0.5), ("y", 0.5)]


def test_rrf_weights_and_list_top_k() -> None:
    weighted = ranked(ReciprocalRankFusion(k=0, weights=[1.0, 3.0]).run(hits=[A, B]))
    assert weighted[0] == ("c", pytest.approx(1 / 3 + 3 / 1))
    assert weighted[1] == ("d", pytest.approx(3 / 2))
    cut = ranked(ReciprocalRankFusion(k=0, list_top_k=[1, 2], top_k=None).run(hits=[A, B]))
    assert [i for i, _ in cut] == ["a", "c", "d"]  # b and c of A were cut before fusing
    assert cut[1] == ("c", pytest.approx(1.0))


def test_union_mode_keeps_every_candidate() -> None:
    assert len(ReciprocalRankFusion(top_k=None).run(hits=[A, B])["hits"]) == 4
    assert len(ScoreFusion(top_k=None).run(hits=[A, B])["hits"]) == 4


def test_normalisations_by_hand() -> None:
    assert normalize([9, 5, 1], "minmax").tolist() == [1.0, 0.5, 0.0]
    z = normalize([9, 5, 1], "zscore")
    std = math.sqrt(32 / 3)
    assert z.tolist() == pytest.approx([4 / std, 0.0, -4 / std])
    d = normalize([9, 5, 1], "dbsf")
    assert d.tolist() == pytest.approx([(4 + 3 * std) / (6 * std), 0.5, (3 * std - 4) / (6 * std)])
    assert normalize([2, 2], "minmax").tolist() == [1.0, 1.0] and normalize([2, 2], "zscore").tolist() == [0, 0]


def test_minmax_fusion_by_hand() -> None:
    result = dict(ranked(ScoreFusion(method="minmax", weights=[1.0, 2.0]).run(hits=[A, B])))
    # A: a 1, b 0.5, c 0; B: c 1, d 0; absent from a list counts as its lowest (0 in both)
    assert result == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0 + 2.0, "d": 0.0})


def test_zscore_absent_counts_as_the_lowest() -> None:
    result = dict(ranked(ScoreFusion(method="zscore").run(hits=[A, B])))
    std = math.sqrt(32 / 3)
    low_a, low_b = -4 / std, -1.0  # B: 0.9, 0.8 → +1, -1
    assert result["d"] == pytest.approx(low_a + low_b)  # d is not in A
    assert result["a"] == pytest.approx(4 / std + low_b)  # a is not in B
    assert result["c"] == pytest.approx(-4 / std + 1.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ReciprocalRankFusion(top_k=0), "top_k must be None"),
        (lambda: ReciprocalRankFusion(weights=[-1.0]), "weights must be"),
        (lambda: ScoreFusion(list_top_k=0), "list_top_k must be"),
        (lambda: ScoreFusion(method="softmax"), "method must be one of minmax, zscore, dbsf"),
    ],
)
def test_bad_settings(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        make()


def test_weights_must_match_the_lists() -> None:
    with pytest.raises(ConfigError, match="weights has 3 values but 2 lists are fused"):
        ReciprocalRankFusion(weights=[1, 1, 1]).run(hits=[A, B])
