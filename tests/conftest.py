"""Suite-wide settings.

In CI (`CI` set, as `.ci/run` runs) hypothesis explores the same examples on every run, so a
red build is reproducible and never a roll of the dice; locally it keeps exploring new ones.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
