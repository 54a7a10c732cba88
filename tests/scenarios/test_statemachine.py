"""Property-based scenarios: a bounded run of the site state machine (CI), a long one for
``make scenarios`` (``-m scenarios``, split in two halves so ``-n 2`` uses both cores)."""

from __future__ import annotations

import pytest
from hypothesis import settings

from scenarios.statemachine import SiteMachine, fuzz_settings, run_fuzz

TestBoundedSiteMachine = SiteMachine.TestCase
TestBoundedSiteMachine.settings = settings(fuzz_settings(examples=12, steps=12), derandomize=True)


@pytest.mark.scenarios
@pytest.mark.parametrize("half", [1, 2])
def test_long_site_campaign(half):
    """Many sites, long step sequences; HYPOTHESIS_PROFILE=long sets the example count."""
    run_fuzz(seed=1000 + half, examples=max(1, settings().max_examples // 2), steps=30)
