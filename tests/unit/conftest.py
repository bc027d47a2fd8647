"""Fixtures shared by the unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from kubemint import logs


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """The root and audit loggers' handlers, levels and propagation put back as they were
    after the test, for tests that call kubemint.logs.configure (directly or through a
    program's main) and so replace them."""
    root, audit_log = logging.getLogger(), logging.getLogger(logs.AUDIT_LOGGER)
    saved = (root.handlers[:], root.level, audit_log.handlers[:], audit_log.propagate)
    yield
    root.handlers[:], audit_log.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    audit_log.propagate = saved[3]
    audit_log.setLevel(logging.NOTSET)
