"""Fixtures the web page's browser tests share: one headless Chromium for the whole run (starting one costs
seconds on a busy machine). Each module starts its own app on its own port and signs the browser in
itself; browsers keep cookies per host, not per port, so a module's sign-in replaces the previous module's cookie
(which the new app would not know anyway)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.webharness import make_browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    driver = make_browser()
    try:
        yield driver
    finally:
        driver.quit()
