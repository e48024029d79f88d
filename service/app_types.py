"""Type aliases the handlers use for injected resources (kept apart to avoid import cycles)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.app import Resources

    ResourcesT = Resources
else:
    ResourcesT = Any
