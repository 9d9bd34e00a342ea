"""``python -m bot``: see :mod:`bot.cli`.

SIGTERM and SIGINT are caught before anything else is imported, so a signal at any moment of start-up (even
during the imports, which take a while on a busy machine) ends the process with status 0 and no traceback; once
the event loop runs, :mod:`bot.connect` handles them.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        from bot.cli import main  # the heavy imports wait until the signals are caught

        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
