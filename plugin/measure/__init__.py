"""Population measures that need no chart review: SPADE observed − expected harm per
symptom–disease pair (issue 16)."""

from plugin.measure.pairs import Pair, load_pairs
from plugin.measure.run import measure_source, measure_visits

__all__ = ["Pair", "load_pairs", "measure_source", "measure_visits"]
