"""Per-subscriber learned relevance: logistic regression, trained in one batch for everyone.

A subscriber with at least :data:`MIN_POSITIVES` 👍 (a 🔖 counts as 👍) and
:data:`MIN_NEGATIVES` 👎 gets a linear model trained on their ratings plus a sample of
recent papers they never rated, taken as weak negatives (most papers are not for any one
person; the low sample weight says "probably not", not "no"). Features are the fixed hashed
space of :mod:`bot.ranking`, so stored weights need no vocabulary and apply to tomorrow's
papers; only the :data:`MODEL_TERMS` strongest weights are kept, which makes a model a few
kilobytes and lets digest time apply every model as one sparse matrix product.

Everything with fewer ratings is handled at digest time by Rocchio (see ``bot.ranking``),
which needs no training; models are never trained at digest time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from bot.ranking import FEATURE_SPACE, LinearModel, document_tokens, hashed_features
from storage import feedback, learned, papers, subscribers
from storage.db import Database
from storage.learned import StoredModel
from storage.models import Paper

log = logging.getLogger(__name__)

MIN_POSITIVES = 10
MIN_NEGATIVES = 10
MODEL_TERMS = 256
"""Weights kept per model (largest magnitude)."""
REGULARISATION_C = 4.0
BACKGROUND_SAMPLE = 200
"""Unrated recent papers added to each subscriber's training set as weak negatives."""
BACKGROUND_WEIGHT = 0.2
BACKGROUND_POOL = 5000
"""Recent papers loaded once per batch to draw every subscriber's background sample from."""
BACKGROUND_DAYS = 60
_ID_CHUNK = 900


@dataclass(frozen=True)
class TrainReport:
    """What one batch training run did."""

    trained: int = 0
    removed: int = 0
    """Stale models dropped (their subscriber no longer has enough ratings)."""
    eligible: int = 0
    failed: tuple[int, ...] = ()
    """Subscribers whose fit failed (logged; their previous model is kept)."""
    seconds: float = 0.0
    per_subscriber: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Subscriber → (positives, negatives) used."""


def eligible(ratings: Mapping[str, int]) -> bool:
    """True when a subscriber has enough of both kinds of ratings for a model."""
    positives = sum(1 for v in ratings.values() if v > 0)
    return positives >= MIN_POSITIVES and len(ratings) - positives >= MIN_NEGATIVES


def fit_model(
    positive: sp.csr_matrix,
    negative: sp.csr_matrix,
    background: sp.csr_matrix | None = None,
    *,
    c: float = REGULARISATION_C,
    background_weight: float = BACKGROUND_WEIGHT,
    keep: int = MODEL_TERMS,
) -> LinearModel:
    """A logistic regression on rated papers (rows in the hashed space), pruned to ``keep``.

    Classes are balanced so a subscriber who mostly 👎 still gets a useful model; background
    rows count ``background_weight`` each.
    """
    parts = [positive, negative] + ([background] if background is not None else [])
    features = sp.vstack(parts).tocsr()
    labels = np.r_[
        np.ones(positive.shape[0]),
        np.zeros(negative.shape[0] + (background.shape[0] if background is not None else 0)),
    ]
    weights = np.r_[
        np.full(positive.shape[0], 1.0),
        np.full(negative.shape[0], 1.0),
        np.full(background.shape[0] if background is not None else 0, background_weight),
    ]
    # Balance the two classes by their total sample weight.
    positive_total = weights[labels == 1].sum()
    negative_total = weights[labels == 0].sum()
    weights[labels == 1] *= (positive_total + negative_total) / (2 * positive_total)
    weights[labels == 0] *= (positive_total + negative_total) / (2 * negative_total)
    # Fit on the columns that occur (a few thousand of the 2^18): the solver's cost follows the
    # width of the matrix, and an unseen feature's weight would stay exactly zero anyway.
    used = np.unique(features.indices)
    model = LogisticRegression(C=c, solver="liblinear", max_iter=200)
    model.fit(features[:, used], labels, sample_weight=weights)
    coefficients = model.coef_.ravel().astype(np.float32)
    nonzero = np.flatnonzero(coefficients)
    if len(nonzero) > keep:
        nonzero = nonzero[np.argpartition(-np.abs(coefficients[nonzero]), keep - 1)[:keep]]
    nonzero = np.sort(nonzero)
    return LinearModel(
        indices=used[nonzero].astype(np.uint32),
        weights=coefficients[nonzero],
        intercept=float(model.intercept_[0]),
    )


def as_linear_model(stored: StoredModel) -> LinearModel:
    """The ranking view of a stored model."""
    return LinearModel(
        indices=stored.indices, weights=stored.weights, intercept=stored.intercept,
        space=stored.space,
    )  # fmt: skip


def paper_features(rows: Sequence[Paper], title_weight: int = 2) -> sp.csr_matrix:
    """Stored papers in the hashed feature space."""
    return hashed_features(
        [document_tokens(p.title, p.abstract, title_weight) for p in rows],
        [tuple(p.authors) for p in rows],
    )


def _load_papers(db: Database, ids: Sequence[str]) -> dict[str, Paper]:
    found: dict[str, Paper] = {}
    for start in range(0, len(ids), _ID_CHUNK):
        found.update(papers.get_papers(db, ids[start : start + _ID_CHUNK]))
    return found


def train_all(
    db: Database,
    now: datetime,
    *,
    title_weight: int = 2,
    seed: int = 0,
    background_days: int = BACKGROUND_DAYS,
) -> TrainReport:
    """Train and store a model for every subscriber with enough ratings, in one batch.

    Models of subscribers who no longer qualify are dropped, so Rocchio takes over again.
    One failing fit is logged and skipped; it never stops the batch.
    """
    started = time.perf_counter()
    everyone = [s.id for s in subscribers.active(db) if s.id is not None]
    ratings = feedback.ratings(db, everyone)
    chosen = {sid: r for sid, r in ratings.items() if eligible(r)}
    stale = sorted(learned.modelled_subscribers(db) - set(chosen))
    removed = learned.delete_models(db, stale) if stale else 0
    if not chosen:
        return TrainReport(removed=removed, seconds=time.perf_counter() - started)
    rated_ids = sorted({x for r in chosen.values() for x in r})
    rated = _load_papers(db, rated_ids)
    rng = np.random.default_rng(seed)
    recent = papers.recent_papers(db, now - timedelta(days=background_days))
    if len(recent) > BACKGROUND_POOL:
        recent = [
            recent[i] for i in sorted(rng.choice(len(recent), BACKGROUND_POOL, replace=False))
        ]
    known = list(rated.values())
    rows = {p.arxiv_id: i for i, p in enumerate(known)}
    features = paper_features(known + recent, title_weight)
    background_rows = np.arange(len(known), len(known) + len(recent))
    background_ids = [p.arxiv_id for p in recent]
    stored: list[StoredModel] = []
    failed: list[int] = []
    used: dict[int, tuple[int, int]] = {}
    for subscriber_id, given in chosen.items():
        positive = [rows[x] for x, v in given.items() if v > 0 and x in rows]
        negative = [rows[x] for x, v in given.items() if v < 0 and x in rows]
        if len(positive) < MIN_POSITIVES or len(negative) < MIN_NEGATIVES:
            continue  # rated papers we never stored: not enough left to learn from
        unrated = background_rows[[x not in given for x in background_ids]]
        sample = rng.choice(unrated, min(BACKGROUND_SAMPLE, len(unrated)), replace=False)
        try:
            model = fit_model(features[positive], features[negative], features[sample])
        except (ValueError, FloatingPointError, ConvergenceWarning):
            log.exception("training failed for subscriber %s", subscriber_id)
            failed.append(subscriber_id)
            continue
        used[subscriber_id] = (len(positive), len(negative))
        stored.append(
            StoredModel(
                subscriber_id=subscriber_id,
                space=FEATURE_SPACE,
                intercept=model.intercept,
                indices=model.indices,
                weights=model.weights,
                positives=len(positive),
                negatives=len(negative),
                trained_at=now,
            )
        )
    learned.save_models(db, stored)
    return TrainReport(
        trained=len(stored),
        removed=removed,
        eligible=len(chosen),
        failed=tuple(failed),
        seconds=time.perf_counter() - started,
        per_subscriber=used,
    )
