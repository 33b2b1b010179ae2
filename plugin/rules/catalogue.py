"""Where the e-trigger catalogue is, installed or in a checkout, and the roots a command loads.

The repository keeps the catalogue at its top level (``rules/``); the wheel ships that
directory inside the package as ``plugin/catalogue`` (``pyproject.toml`` maps it). An installed
copy is found next to this package; an editable install or a plain checkout has no
``plugin/catalogue`` and uses the repository's ``rules/`` beside ``plugin/``.

A site's own rules directories load after the catalogue (later roots add rules and
override a catalogue rule with the same id): :func:`rule_roots` builds that list.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # plugin/
INSTALLED = _PACKAGE / "catalogue"  # where the wheel puts rules/
CHECKOUT = _PACKAGE.parent / "rules"  # the repository's rules/, for editable installs


def default_rules_dir() -> Path:
    """The catalogue shipped with dxsafety: the installed copy first, then the checkout's.

    When neither exists (a broken install) the installed location is returned, so the
    loader's "no such file or directory" names the place the catalogue should be.
    """
    for candidate in (INSTALLED, CHECKOUT):
        if candidate.is_dir():
            return candidate
    return INSTALLED


def rule_roots(
    site: Iterable[str | Path] = (),
    *,
    catalogue: str | Path | None = None,
    use_catalogue: bool = True,
) -> list[Path]:
    """The rules roots to load, in order: the catalogue (``catalogue`` or the shipped one,
    unless ``use_catalogue`` is false), then each ``site`` directory.

    A root given twice (``--rules rules/`` in a checkout names the catalogue again) is
    loaded once, at its first place, so it cannot override itself.
    """
    wanted: list[Path] = []
    if use_catalogue:
        wanted.append(Path(catalogue) if catalogue is not None else default_rules_dir())
    wanted += [Path(p) for p in site]
    roots: list[Path] = []
    seen: set[Path] = set()
    for root in wanted:
        key = root.resolve()
        if key not in seen:
            seen.add(key)
            roots.append(root)
    return roots


def is_catalogue(root: str | Path) -> bool:
    """Whether ``root`` is the shipped catalogue (for showing a rule's origin)."""
    return Path(root).resolve() == default_rules_dir().resolve()
