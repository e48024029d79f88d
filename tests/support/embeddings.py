"""A deterministic, offline embedding function for the store's semantic-search tests.

Each word is hashed (BLAKE2b, so the same on every run and machine) into one of ``DIMS``
buckets; the vector is the normalised bag of buckets. Texts that share words score higher, so
a query's nearest item is predictable without any model.
"""

from __future__ import annotations

import hashlib
import math
import re

DIMS = 64


def _vector(text: str) -> list[float]:
    counts = [0.0] * DIMS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big") % DIMS
        counts[bucket] += 1.0
    norm = math.sqrt(sum(c * c for c in counts)) or 1.0
    return [c / norm for c in counts]


def embed(texts: list[str]) -> list[list[float]]:
    return [_vector(t) for t in texts]
