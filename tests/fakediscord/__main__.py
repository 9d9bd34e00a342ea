"""``python -m tests.fakediscord [--port N]``: run the fake on its own and print its URLs until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from .server import FakeDiscord


async def _serve(port: int) -> None:
    fake = FakeDiscord(port=port)
    await fake.start()
    try:
        print(f"DISCORD_API_BASE={fake.api_base}")
        print(f"DISCORD_GATEWAY_URL={fake.gateway_url}")
        print(f"CDN={fake.cdn_base}")
        print(f"guild={fake.guild.id} channel={fake.channel_id} application={fake.application_id}", flush=True)
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main() -> None:
    """Parse ``--port`` (default 0: any free port) and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakediscord", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free port)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
