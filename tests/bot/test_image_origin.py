"""``bot.image_origin``: which URLs the bot may fetch an input image from (no network)."""

from __future__ import annotations

import pytest

from bot.image_origin import ImageOriginError, check_image_url, is_allowed, same_origin, stand_in_origin

FAKE_API = "http://127.0.0.1:8123/api/v10"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cdn.discordapp.com/attachments/1/2/cat.png?ex=1&is=2&hm=3", True),
        ("https://media.discordapp.net/attachments/1/2/cat.png", True),
        ("https://images-ext-1.discordapp.net/external/abc/https/example.com/cat.png", True),
        ("https://CDN.DiscordApp.com/attachments/1/2/cat.png", True),  # host names are case-insensitive
        ("http://cdn.discordapp.com/attachments/1/2/cat.png", False),  # https only
        ("https://cdn.discordapp.com:8443/attachments/1/2/cat.png", False),  # default port only
        ("https://cdn.discordapp.com.evil.example/cat.png", False),
        ("https://evil.example/cdn.discordapp.com/cat.png", False),
        ("https://user@cdn.discordapp.com@169.254.169.254/latest", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://images-ext-x.discordapp.net/external/cat.png", False),
        ("file:///etc/passwd", False),
        ("not a url", False),
        ("https://cdn.discordapp.com:99999/x.png", False),  # a malformed port
    ],
)
def test_discord_hosts_only(url: str, allowed: bool) -> None:
    assert is_allowed(url, None) is allowed
    assert is_allowed(url, "https://discord.com/api/v10") is allowed  # Discord's own API base changes nothing


def test_a_stand_in_api_server_is_the_one_allowed_origin() -> None:
    assert is_allowed("http://127.0.0.1:8123/cdn/attachments/1/cat.png", FAKE_API)
    assert not is_allowed("http://127.0.0.1:8124/cdn/attachments/1/cat.png", FAKE_API)  # another port
    assert not is_allowed("https://127.0.0.1:8123/cdn/attachments/1/cat.png", FAKE_API)  # another scheme
    assert not is_allowed("http://localhost:8123/cdn/attachments/1/cat.png", FAKE_API)  # another host name
    assert not is_allowed("https://cdn.discordapp.com/attachments/1/2/cat.png", FAKE_API)
    origin = stand_in_origin(FAKE_API)
    assert origin is not None and (origin.scheme, origin.host, origin.port) == ("http", "127.0.0.1", 8123)


def test_refusal_and_redirect_rule() -> None:
    with pytest.raises(ImageOriginError, match="only fetch images from Discord's own attachment servers"):
        check_image_url("http://10.0.0.1/admin", None)
    assert same_origin("https://cdn.discordapp.com/a", "https://cdn.discordapp.com:443/b")
    assert not same_origin("https://cdn.discordapp.com/a", "https://media.discordapp.net/a")
    assert not same_origin("https://cdn.discordapp.com/a", "")
