"""Shared pytest configuration: hypothesis profiles.

``ci``  (selected when the ``CI`` environment variable is set): derandomized, so a CI run is
        reproducible; prints the reproduction blob of any failure.
``dev`` (default): random examples, a few more of them.

Override with ``pytest --hypothesis-profile=NAME``.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

settings.register_profile("ci", derandomize=True, max_examples=40, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=60, **_COMMON)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture
def one_thread():
    """Tiny matrices: multi-threaded BLAS only adds spin-wait (100x slower on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
