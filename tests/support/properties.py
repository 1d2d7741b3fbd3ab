"""Property-based tests run the same examples on every run and every machine (derandomized,
no example database), each with a budget of examples that keeps the suite quick. For a
longer, randomised search: HYPOTHESIS_PROFILE=deep ./scripts/test -k "fuzz or names"
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("deep", database=None, deadline=None, print_blob=True)
settings.load_profile(PROFILE)


def budget(examples: int) -> int:
    """A property test's number of examples: as given in CI, twenty times more in the deep profile."""
    return examples * 20 if PROFILE == "deep" else examples
