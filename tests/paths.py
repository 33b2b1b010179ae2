"""Where the shared, read-only data written by others lives (``../shared`` beside the checkout).

``DXSAFETY_SHARED_DIR`` overrides; otherwise the checkout's sibling ``shared/`` and then
``/work/shared`` are tried, so a clone anywhere on the machine finds it.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shared() -> Path:
    candidates = [ROOT.parent / "shared", Path("/work/shared")]
    if os.environ.get("DXSAFETY_SHARED_DIR"):
        candidates.insert(0, Path(os.environ["DXSAFETY_SHARED_DIR"]))
    return next((c for c in candidates if (c / "data").is_dir()), candidates[-1])


SHARED = _shared()
DATA = SHARED / "data"
CDS_EXAMPLES = SHARED / "cds-hooks-examples"
