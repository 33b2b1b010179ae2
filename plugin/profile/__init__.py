"""``dxsafety profile``: how much of a source maps to what the rules read, and which rules the
source can evaluate (issue 11 item 7). :func:`profile_source` reads a source through the one
population pipeline; :func:`render_html` draws the page for people, ``Profile.as_json`` the
record for machines."""

from plugin.profile.html import render_html
from plugin.profile.measure import Field, Profile, build_profile
from plugin.profile.run import profile_source

__all__ = ["Field", "Profile", "build_profile", "profile_source", "render_html"]
