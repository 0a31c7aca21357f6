"""Where the paintings come from: the synthetic set, Kaggle, a URL, a local folder or archive.

Fetching each source safely (downloads with limits and ``~/.netrc`` logins, archives
unpacked member by member), finding the Kaggle layout inside it, the rules for artist and
file names, and normalising it all into ``data/raw`` (:mod:`painter_id.sources.ingest`).
Used by the ``source`` and ``download`` stages only. Nothing here imports TensorFlow.
"""
