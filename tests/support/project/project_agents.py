"""A graph named by module path (``project_agents:graph``), importable from the project directory."""

from __future__ import annotations

from agent import graph

__all__ = ["graph"]
