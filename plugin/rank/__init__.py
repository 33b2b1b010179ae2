"""LightGBM ranker: P(MOD) of rule findings, likely missed diagnosis, real-time risk.

Public API: :func:`load_model` → :class:`Ranker` (``score_findings``, ``realtime_risk``),
:class:`Risk`, :class:`MissedDxRanker`, ``FEATURE_VERSION``.
"""

from plugin.rank.features import FEATURE_VERSION
from plugin.rank.model import MissedDxRanker
from plugin.rank.ranker import Ranker, Risk, load_model, save_model

__all__ = ["FEATURE_VERSION", "MissedDxRanker", "Ranker", "Risk", "load_model", "save_model"]
