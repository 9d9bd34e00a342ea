"""The fake's pieces on their own: option building, fault rules, wait timeouts, bad arguments."""

from __future__ import annotations

import pytest

from tests.fakediscord.faults import Fault
from tests.fakediscord.options import ATTACHMENT, CHANNEL, NUMBER, Option, build_options
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.world import FakeTimeout

SYNCED = {
    "name": "admin",
    "options": [
        {
            "name": "quota",
            "type": 2,
            "options": [
                {
                    "name": "set",
                    "type": 1,
                    "options": [{"name": "seconds", "type": NUMBER}, {"name": "user", "type": 6}],
                },
            ],
        },
    ],
}


def test_options_nest_under_group_and_subcommand_and_follow_the_schema() -> None:
    fake = FakeDiscord()
    options, resolved = build_options(SYNCED, ["quota", "set"], {"seconds": 3, "user": fake.member}, guild=fake.guild)
    assert options == [
        {
            "name": "quota",
            "type": 2,
            "options": [
                {
                    "name": "set",
                    "type": 1,
                    "options": [
                        {"name": "seconds", "type": NUMBER, "value": 3.0},
                        {"name": "user", "type": 6, "value": str(fake.member.user_id)},
                    ],
                }
            ],
        }
    ]
    assert resolved["users"][str(fake.member.user_id)]["username"] == "alice"
    assert resolved["members"][str(fake.member.user_id)]["permissions"] == str(fake.guild.permissions_of(fake.member))


def test_options_without_a_schema_infer_types_and_resolve_attachments() -> None:
    fake = FakeDiscord()
    image = fake.add_attachment(b"abc", "x.png")
    options, resolved = build_options(
        None,
        [],
        {"image": image, "n": 2, "f": 0.5, "b": False, "s": "t", "c": Option(fake.channel_id, CHANNEL)},
        guild=fake.guild,
    )
    assert [(o["name"], o["type"], o["value"]) for o in options] == [
        ("image", ATTACHMENT, str(image.id)),
        ("n", 4, 2),
        ("f", 10, 0.5),
        ("b", 5, False),
        ("s", 3, "t"),
        ("c", CHANNEL, str(fake.channel_id)),
    ]
    assert resolved["attachments"][str(image.id)]["url"].endswith(f"/{image.id}/x.png")


def test_bad_options_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"\['frames'\] are not in the synced command's schema"):
        build_options(SYNCED, ["quota", "set"], {"frames": 1}, guild=None)
    with pytest.raises(ValueError, match="no subcommand or group 'limits'"):
        build_options(SYNCED, ["limits"], {}, guild=None)
    with pytest.raises(TypeError, match="option 'when'.*list"):
        build_options(None, [], {"when": [1]}, guild=None)


def test_fault_rules_match_and_run_out() -> None:
    fault = Fault("status", method="post", path=r"^/channels/\d+/messages$", times=2)
    assert fault.matches("POST", "/channels/1/messages") and not fault.matches("GET", "/channels/1/messages")
    assert not fault.matches("POST", "/channels/1/messages/2")
    fault.hits = 2
    assert not fault.live and not fault.matches("POST", "/channels/1/messages")
    with pytest.raises(ValueError, match="times must be >= 1"):
        Fault("slow", times=0)


def test_bad_world_arguments_are_refused() -> None:
    fake = FakeDiscord()
    with pytest.raises(ValueError, match="no guild 123"):
        fake.add_channel(123, "x")
    with pytest.raises(ValueError, match="premium_tier=7"):
        fake.add_guild("g", premium_tier=7)
    with pytest.raises(ValueError, match="filename='a/b'"):
        fake.add_attachment(b"", "a/b")
    with pytest.raises(ValueError, match="role 5 is not in guild"):
        fake.add_member(fake.guild.id, "x", roles=[5])
    with pytest.raises(ValueError, match="permissions=-1"):
        fake.set_member_permissions(fake.member, -1)
    with pytest.raises(ValueError, match="seconds=-1"):
        fake.expire_tokens_after(-1)


async def test_waits_time_out_listing_what_was_seen(fake_discord: FakeDiscord) -> None:
    with pytest.raises(FakeTimeout, match="no bot connected to the gateway within 0.05s"):
        await fake_discord.inject_slash("animate", timeout=0.05)
    with pytest.raises(FakeTimeout, match="no request matched within 0.05s; requests seen:"):
        await fake_discord.wait_for(lambda r: True, timeout=0.05)
