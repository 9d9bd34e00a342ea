"""A claimer in its own process: claims until the queue is empty, prints one claimed id per line.

Usage: python claimer_proc.py DATABASE_URL WORKER_ID
"""

from __future__ import annotations

import asyncio
import sys

from jobs.db import make_engine, make_sessionmaker
from jobs.transitions import claim_next_job

LEASE_S = 300.0


async def main(url: str, worker_id: str) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    claimed: list[int] = []
    try:
        while True:
            async with sessions() as session, session.begin():
                job = await claim_next_job(session, worker_id, lease_seconds=LEASE_S)
            if job is None:
                break
            claimed.append(job.id)
    finally:
        await engine.dispose()
    sys.stdout.write("".join(f"{i}\n" for i in claimed))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
