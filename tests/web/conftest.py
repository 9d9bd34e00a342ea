"""Fixtures the web page's browser tests share: one headless Chromium for the whole run (starting one costs
seconds on a busy machine). Each module starts its own app on its own port; in loopback mode the page ignores
cookies, so a session cookie one module's app set never changes what another module's page shows."""

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
