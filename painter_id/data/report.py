"""Log lines that several stages print alike, so they read the same in every stage's output."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Iterable


def log_train_test_counts(log: logging.Logger, train_artists: Iterable[str], test_artists: Iterable[str]) -> None:
    """One line per artist: how many of its images are in the training and the test split."""
    train_counts, test_counts = Counter(train_artists), Counter(test_artists)
    for artist in sorted(train_counts | test_counts):
        log.info("%s: %d train, %d test", artist, train_counts[artist], test_counts[artist])
