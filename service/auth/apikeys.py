"""API keys: the ``x-api-key`` header, as langgraph-sdk sends it; service-to-service callers.

Keys are compared in constant time with every key (timing reveals neither which key nor how much
matched) and never logged. The guard that asks for them is service.auth.gate.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence


def key_matches(given: bytes, keys: Sequence[bytes]) -> bool:
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key)
    return matched
