"""The Discord side's own step of a request: fetch the image from Discord's attachment hosts with a byte cap
(refusing before reading more than the cap).

The rest of the flow is shared with the web page and lives in ``jobs.requests``: decode and check the image off
the event loop (``check_upload``: real decode, bomb guard), then enqueue with the input image stored and the
quota reserved in one transaction (``enqueue_request``, over ``jobs.queue.enqueue_job``, which applies the
server's caps, pauses, bans and quotas; the image is kept once per distinct content, see ``jobs.blobs``). The
commands reach it through ``bot.actions.queue_job``. Any refusal rolls that transaction back, so a refused request
leaves nothing behind and costs nothing, and cannot take away the stored image of another request with the same
picture.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urljoin

import aiohttp

from bot.errors import UserFacingError
from bot.image_origin import REDIRECT_MESSAGE, ImageOriginError, check_image_url, same_origin
from jobs.requests import input_byte_cap, too_large

if TYPE_CHECKING:
    from bot.app import I2VBot

log = logging.getLogger(__name__)

DOWNLOAD_CHUNK_BYTES = 64 * 1024  # read size while streaming an image download
MAX_REDIRECTS = 3  # same-origin redirects followed for one image download
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DOWNLOAD_FAILED_MESSAGE = "I could not download that image from Discord; upload it again and retry."


def byte_cap(bot: I2VBot) -> int:
    """The largest input image accepted, in bytes: MAX_DOWNLOAD_BYTES, at most what the image decoder and the
    job store accept."""
    return input_byte_cap(bot.settings.max_download_bytes)


async def download_image(bot: I2VBot, url: str, *, declared_size: int | None = None) -> bytes:
    """Fetch ``url`` from Discord's attachment hosts only (``bot.image_origin``), following redirects only within
    its origin, and never hold more than the byte cap: refuse early on the declared, header or streamed size.

    A refusal says what was wrong; the HTTP status or error of a failed fetch goes to the log, not to the user.
    """
    cap = byte_cap(bot)
    if declared_size is not None and declared_size > cap:
        raise too_large(declared_size, cap)
    check_image_url(url, bot.settings.api_base)
    assert bot.web is not None
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with bot.web.get(url, allow_redirects=False) as response:
                if response.status in REDIRECT_STATUSES:
                    target = urljoin(url, response.headers.get("Location", ""))
                    if not same_origin(url, target):
                        log.warning("image %s redirected to another origin (%s); not followed", url, target)
                        raise ImageOriginError(REDIRECT_MESSAGE)
                    url = target
                    continue
                if response.status != 200:
                    log.warning("image download answered HTTP %s", response.status)
                    raise UserFacingError(DOWNLOAD_FAILED_MESSAGE)
                if response.content_length is not None and response.content_length > cap:
                    raise too_large(response.content_length, cap)
                buffer = bytearray()
                async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK_BYTES):
                    buffer += chunk
                    if len(buffer) > cap:
                        raise too_large(len(buffer), cap)
                return bytes(buffer)
        log.warning("image download redirected more than %d times; given up", MAX_REDIRECTS)
        raise UserFacingError(DOWNLOAD_FAILED_MESSAGE)
    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
        log.warning("image download failed: %r", error)
        raise UserFacingError("I could not download that image (the connection failed); try again.") from error
