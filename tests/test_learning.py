"""Learned ranking: the logistic regression, its storage, the batch job, and measured quality."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import bot.learning as learning
from bot.learning import MIN_NEGATIVES, MIN_POSITIVES, eligible, fit_model, train_all
from bot.ranking import FEATURE_SPACE, document_tokens, hashed_features
from feeds.records import Paper as PaperRecord
from storage import feedback, learned, papers, subscribers
from storage.db import Database
from storage.learned import StoredModel
from storage.models import Platform

NOW = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)
GRAPH = (
    "pooling attention readout equivariance sampling transformers kernels spectra motifs".split()
)
VISION = "masks prompts queries adapters priors scribbles boxes points depth clicks edges".split()


def features(titles: list[str]) -> object:
    return hashed_features([document_tokens(t, t) for t in titles], [() for _ in titles])


def test_fit_model_separates_topics_and_keeps_the_strongest_weights() -> None:
    positive = features([f"graph neural networks with {w} on molecules" for w in GRAPH])
    negative = features([f"image segmentation with {w}" for w in VISION])
    background = features([f"random topic {w} about economics" for w in GRAPH + VISION])
    model = fit_model(positive, negative, background, keep=32)  # type: ignore[arg-type]
    assert len(model.indices) == 32 and np.all(np.diff(model.indices.astype(np.int64)) > 0)
    assert model.space == FEATURE_SPACE
    test = features(["graph neural networks for crystals", "segmentation of aerial images"])
    dense = np.zeros(test.shape[1], dtype=np.float32)  # type: ignore[attr-defined]
    dense[model.indices] = model.weights
    logits = test @ dense + model.intercept  # type: ignore[operator]
    assert logits[0] > 0 > logits[1]


def test_hashed_features_do_not_depend_on_the_other_papers() -> None:
    alone = hashed_features([document_tokens("Diffusion models", "")], [("Ann Lee",)])
    among = hashed_features(
        [document_tokens("Graph networks", "x"), document_tokens("Diffusion models", "")],
        [(), ("Ann Lee",)],
    )
    assert (alone != among[1]).nnz == 0
    assert np.isclose(alone.multiply(alone).sum(), 1.0)


def test_eligibility_needs_both_kinds_of_ratings() -> None:
    ratings = {f"p{i}": 1 for i in range(MIN_POSITIVES)} | {
        f"n{i}": -1 for i in range(MIN_NEGATIVES)
    }
    assert eligible(ratings)
    assert not eligible({k: v for k, v in ratings.items() if k != "p0"})
    assert not eligible({k: v for k, v in ratings.items() if k != "n0"})


def test_stored_models_round_trip(db: Database) -> None:
    sub, _ = subscribers.get_or_create(db, Platform.CONSOLE, "a")
    other, _ = subscribers.get_or_create(db, Platform.CONSOLE, "b")
    assert sub.id is not None and other.id is not None
    model = StoredModel(
        subscriber_id=sub.id,
        space=FEATURE_SPACE,
        intercept=-1.25,
        indices=np.array([3, 70000, 262143], dtype=np.uint32),
        weights=np.array([0.5, -2.0, 1e-3], dtype=np.float32),
        positives=12,
        negatives=11,
        trained_at=NOW,
    )
    old = StoredModel(other.id, "hash16-v0", 0.0, np.array([1], np.uint32), np.ones(1, np.float32))
    assert learned.save_models(db, [model, old]) == 2
    loaded = learned.load_models(db, [sub.id, other.id], space=FEATURE_SPACE)
    assert list(loaded) == [sub.id]
    got = loaded[sub.id]
    assert (
        got.intercept == -1.25
        and got.trained_at == NOW
        and (got.positives, got.negatives) == (12, 11)
    )
    assert np.array_equal(got.indices, model.indices) and np.array_equal(got.weights, model.weights)
    learned.save_models(
        db, [StoredModel(sub.id, FEATURE_SPACE, 2.0, model.indices[:1], model.weights[:1])]
    )
    assert learned.load_models(db, [sub.id])[sub.id].intercept == 2.0  # replaced, not duplicated
    assert learned.count_models(db) == 2 and learned.modelled_subscribers(db) == {sub.id, other.id}
    assert learned.delete_models(db, [other.id]) == 1
    subscribers.remove(db, sub.id)  # a model goes with its subscriber
    assert learned.count_models(db) == 0
    with pytest.raises(ValueError, match="same length"):
        StoredModel(1, FEATURE_SPACE, 0.0, np.array([1, 2], np.uint32), np.ones(1, np.float32))


def _paper(arxiv_id: str, title: str, days: float) -> PaperRecord:
    when = NOW - timedelta(days=days)
    return PaperRecord(
        arxiv_id=arxiv_id, version=1, title=title, abstract=title, authors=("A B",),
        categories=("cs.LG",), primary_category="cs.LG", published=when, updated=when,
        announced=when,
    )  # fmt: skip


def _rate(db: Database, chat: str, positives: int, negatives: int) -> int:
    sub, _ = subscribers.get_or_create(db, Platform.CONSOLE, chat)
    assert sub.id is not None
    liked = [
        _paper(f"2605.1{chat}{i:03d}", f"Graph networks {GRAPH[i % 9]} {i}", 30)
        for i in range(positives)
    ]
    disliked = [
        _paper(f"2605.2{chat}{i:03d}", f"Segmentation {VISION[i % 11]} {i}", 30)
        for i in range(negatives)
    ]
    papers.upsert_papers(db, liked + disliked)
    for p in liked:
        feedback.set_rating(db, sub.id, p.arxiv_id, 1)
    for p in disliked:
        feedback.set_rating(db, sub.id, p.arxiv_id, -1)
    return sub.id


def test_train_all_trains_only_the_eligible_and_drops_stale_models(db: Database) -> None:
    background = [
        _paper(f"2611.0{i:04d}", f"Unrelated topic {i} in economics", 2) for i in range(50)
    ]
    papers.upsert_papers(db, background)
    ready = _rate(db, "1", MIN_POSITIVES, MIN_NEGATIVES)
    short = _rate(db, "2", MIN_POSITIVES - 1, 30)
    report = train_all(db, NOW)
    assert (report.trained, report.eligible, report.removed) == (1, 1, 0)
    assert report.per_subscriber == {ready: (MIN_POSITIVES, MIN_NEGATIVES)}
    assert learned.modelled_subscribers(db) == {ready}
    # One 👍 withdrawn: below the threshold, so the model goes and Rocchio takes over.
    first_liked = next(x for x, v in feedback.ratings(db, [ready])[ready].items() if v > 0)
    feedback.set_rating(db, ready, first_liked, 0)
    report = train_all(db, NOW)
    assert (report.trained, report.removed) == (0, 1)
    assert learned.count_models(db) == 0
    assert short not in learned.modelled_subscribers(db)


def test_one_failing_fit_does_not_stop_the_batch(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _rate(db, "1", MIN_POSITIVES, MIN_NEGATIVES)
    second = _rate(db, "2", MIN_POSITIVES, MIN_NEGATIVES)
    real = learning.fit_model
    calls: list[int] = []

    def flaky(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("singular")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(learning, "fit_model", flaky)
    report = train_all(db, NOW)
    assert report.trained == 1 and len(report.failed) == 1
    assert learned.modelled_subscribers(db) | set(report.failed) == {first, second}


def test_the_full_model_beats_every_baseline_on_the_shipped_data() -> None:
    """bench/quality.py on the labelled set that ships with the tests (titles only, 80 users)."""
    import dataclasses

    from bench import quality

    data = quality.load_data(quality.DATA_DIR, corpus=None)
    data = dataclasses.replace(data, users=data.users[:80])
    rows = quality.main_table(quality.setup(data))
    baselines = [r for r in rows if not r.name.startswith("(e)")]
    full = [r for r in rows if r.name.startswith("(e)")]
    assert len(baselines) == 4 and len(full) == 3
    for model in full:
        for baseline in baselines:
            assert model.ndcg > baseline.ndcg, (model, baseline)
            assert model.auc > baseline.auc, (model, baseline)
            assert model.precision >= baseline.precision, (model, baseline)
    assert full[-1].auc > full[0].auc  # more ratings, better ranking
