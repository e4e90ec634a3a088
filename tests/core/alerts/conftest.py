"""The alert tests' fixture: a CRM that confirms every record (tests/core/alerts/helpers.py)."""

from __future__ import annotations

import pytest

from tests.core.alerts.helpers import ConfirmingTarget


@pytest.fixture
def target() -> ConfirmingTarget:
    return ConfirmingTarget()
