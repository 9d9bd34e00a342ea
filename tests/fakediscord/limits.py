"""Discord's limits on every body the bot sends, enforced by the fake: message create and edit, interaction
callbacks (messages, updates, modals, autocomplete results), webhook follow-ups and edits, and the command sync.

The rules are data in the schema language of :mod:`bot.discord_limits` (which also holds the command rules that
``python -m bot check`` uses). Their numbers are the constraints of Discord's OpenAPI description of its HTTP API
(github.com/discord/discord-api-spec: ``MessageCreateRequest``, ``MessageEditRequestPartial``,
``IncomingWebhookRequestPartial``, ``IncomingWebhookUpdateRequestPartial``, ``RichEmbed*``,
``MessageAllowedMentionsRequest``, ``*ComponentForMessageRequest``, ``*ComponentForModalRequest``,
``ModalInteractionCallbackRequestData``, the autocomplete callback data), and where Discord's documentation is
stricter, the documentation's: a bot's content holds 2000 characters, a message without the components v2 flag 5
action rows, a modal 5 components, an action row 5 buttons or one select, the embeds of a message 6000 characters
together, custom ids unique in a message, a button's custom id or url by its style.

A body that breaks a rule is answered as Discord answers it: 400 with
``{"code": 50035, "message": "Invalid Form Body", "errors": {<field path>: {"_errors": [{"code", "message"}]}}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.discord_limits import (
    CHOICE_NAME_MAX,
    CHOICE_STRING_VALUE_MAX,
    COMMAND_CHOICES_MAX,
    INT53_MAX,
    SNOWFLAKE,
    ByType,
    Check,
    Integer,
    Items,
    Number,
    Obj,
    Path,
    Problem,
    Text,
    boolean,
    command_list_problems,
    localized,
    problems,
)

MESSAGE_CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6000
"""Title, description, field names and values, footer text and author name across every embed of one message."""
ATTACHMENTS_MAX = 10
ACTION_ROWS_MAX = 5
"""Top-level action rows of a message without the IS_COMPONENTS_V2 flag."""
COMPONENTS_V2_MAX = 40
ROW_BUTTONS_MAX = 5
CUSTOM_ID_MAX = 100
MODAL_COMPONENTS_MAX = 5
MODAL_TITLE_MAX = 45
TEXT_INPUT_LABEL_MAX = 45
SELECT_OPTIONS_MAX = 25
COMPONENT_ID_MAX = 2**31 - 1

FLAG_IS_COMPONENTS_V2 = 1 << 15
ROW, BUTTON, STRING_SELECT, TEXT_INPUT, TEXT_DISPLAY, LABEL = 1, 2, 3, 4, 10, 18
AUTO_SELECTS = (5, 6, 7, 8)  # user, role, mentionable and channel selects
BUTTON_LINK, BUTTON_PREMIUM = 5, 6

# -- components ---------------------------------------------------------------------------------------------------

_CUSTOM_ID = Text(1, CUSTOM_ID_MAX)
_EMOJI = Obj({"id": SNOWFLAKE, "name": Text(0, 32)})


def _button_rules(button: dict[str, Any], path: Path, out: list[Problem]) -> None:
    style = button.get("style")
    if style == BUTTON_LINK:
        if not button.get("url"):
            out.append(Problem((*path, "url"), "BUTTON_COMPONENT_URL_REQUIRED", "A url is required"))
        if button.get("custom_id") is not None:
            out.append(
                Problem(
                    (*path, "custom_id"),
                    "BUTTON_COMPONENT_CUSTOM_ID_INVALID",
                    "A custom id cannot be set on a link button",
                )
            )
    elif style == BUTTON_PREMIUM:
        if button.get("sku_id") is None:
            out.append(Problem((*path, "sku_id"), "BASE_TYPE_REQUIRED", "This field is required"))
    else:
        if not button.get("custom_id"):
            out.append(Problem((*path, "custom_id"), "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A custom id is required"))
        if button.get("url") is not None:
            out.append(Problem((*path, "url"), "BUTTON_COMPONENT_URL_INVALID", "A url cannot be set on this button"))
    if style != BUTTON_PREMIUM and not button.get("label") and not button.get("emoji"):
        out.append(Problem((*path, "label"), "BUTTON_COMPONENT_LABEL_REQUIRED", "A label or an emoji is required"))


BUTTON_RULE = Obj(
    {
        "type": Integer(choices=(BUTTON,)),
        "id": Integer(0, COMPONENT_ID_MAX),
        "custom_id": _CUSTOM_ID,
        "style": Integer(choices=(1, 2, 3, 4, BUTTON_LINK, BUTTON_PREMIUM)),
        "label": Text(0, 80),
        "disabled": boolean,
        "url": Text(1, 512),
        "sku_id": SNOWFLAKE,
        "emoji": _EMOJI,
    },
    required=("type", "style"),
    checks=(_button_rules,),
)


def _values_in_range(select: dict[str, Any], path: Path, out: list[Problem]) -> None:
    low, high = select.get("min_values"), select.get("max_values")
    if low is not None and high is not None and low > high:
        out.append(
            Problem(
                (*path, "min_values"),
                "SELECT_COMPONENT_MIN_VALUES_INVALID",
                "min_values must be less than or equal to max_values",
            )
        )
    options = select.get("options")
    if isinstance(options, list) and high is not None and high > len(options):
        out.append(
            Problem(
                (*path, "max_values"),
                "SELECT_COMPONENT_MAX_VALUES_INVALID",
                f"max_values must be less than or equal to {len(options)}, the number of options",
            )
        )


_SELECT_COMMON: dict[str, Check] = {
    "id": Integer(0, COMPONENT_ID_MAX),
    "custom_id": _CUSTOM_ID,
    "placeholder": Text(0, 150),
    "min_values": Integer(0, 25),
    "max_values": Integer(1, 25),
    "disabled": boolean,
    "required": boolean,
}
STRING_SELECT_RULE = Obj(
    {
        "type": Integer(choices=(STRING_SELECT,)),
        **_SELECT_COMMON,
        "options": Items(
            Obj(
                {
                    "label": Text(1, 100),
                    "value": Text(1, 100),
                    "description": Text(0, 100),
                    "default": boolean,
                    "emoji": _EMOJI,
                },
                required=("label", "value"),
            ),
            SELECT_OPTIONS_MAX,
            1,
        ),
    },
    required=("type", "custom_id", "options"),
    checks=(_values_in_range,),
)
AUTO_SELECT_RULE = Obj(
    {
        "type": Integer(choices=AUTO_SELECTS),
        **_SELECT_COMMON,
        "default_values": Items(Obj({"id": SNOWFLAKE, "type": Text()}, required=("id", "type")), 25),
    },
    required=("type", "custom_id"),
    checks=(_values_in_range,),
)


def _row_rules(row: dict[str, Any], path: Path, out: list[Problem]) -> None:
    children = row.get("components")
    if not isinstance(children, list):
        return
    kinds = [c.get("type") for c in children if isinstance(c, dict)]
    if any(k != BUTTON for k in kinds) and len(kinds) > 1:
        out.append(
            Problem(
                (*path, "components"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )
        )


MESSAGE_ROW = Obj(
    {
        "type": Integer(choices=(ROW,)),
        "id": Integer(0, COMPONENT_ID_MAX),
        "components": Items(
            ByType(
                {BUTTON: BUTTON_RULE, STRING_SELECT: STRING_SELECT_RULE, **{k: AUTO_SELECT_RULE for k in AUTO_SELECTS}}
            ),
            ROW_BUTTONS_MAX,
            1,
        ),
    },
    required=("type", "components"),
    checks=(_row_rules,),
)
TEXT_DISPLAY_RULE = Obj(
    {"type": Integer(choices=(TEXT_DISPLAY,)), "id": Integer(0, COMPONENT_ID_MAX), "content": Text(1, 4000)},
    required=("type", "content"),
)

# Components v2 layouts (sections, containers, galleries, files, separators): their sizes from the schema.
_MEDIA = Obj({"url": Text(1, 2048)}, required=("url",))
_THUMBNAIL = Obj(
    {"type": Integer(choices=(11,)), "description": Text(1, 1024), "spoiler": boolean, "media": _MEDIA},
    required=("type", "media"),
)
_SECTION = Obj(
    {
        "type": Integer(choices=(9,)),
        "components": Items(TEXT_DISPLAY_RULE, 3, 1),
        "accessory": ByType({BUTTON: BUTTON_RULE, 11: _THUMBNAIL}),
    },
    required=("type", "components", "accessory"),
)
_GALLERY = Obj(
    {
        "type": Integer(choices=(12,)),
        "items": Items(
            Obj({"description": Text(1, 1024), "spoiler": boolean, "media": _MEDIA}, required=("media",)), 10, 1
        ),
    },
    required=("type", "items"),
)
_FILE = Obj({"type": Integer(choices=(13,)), "spoiler": boolean, "file": _MEDIA}, required=("type", "file"))
_SEPARATOR = Obj(
    {"type": Integer(choices=(14,)), "spacing": Integer(choices=(1, 2)), "divider": boolean}, required=("type",)
)
_IN_CONTAINER = {
    ROW: MESSAGE_ROW,
    TEXT_DISPLAY: TEXT_DISPLAY_RULE,
    9: _SECTION,
    12: _GALLERY,
    13: _FILE,
    14: _SEPARATOR,
}
_CONTAINER = Obj(
    {
        "type": Integer(choices=(17,)),
        "accent_color": Integer(0, 0xFFFFFF),
        "spoiler": boolean,
        "components": Items(ByType(_IN_CONTAINER), COMPONENTS_V2_MAX, 1),
    },
    required=("type", "components"),
)
_V2_TOP = ByType({**_IN_CONTAINER, 17: _CONTAINER})


def _custom_ids(components: Any) -> list[tuple[Path, str]]:
    """Every custom id in a component tree, with its path below the list."""
    found: list[tuple[Path, str]] = []

    def walk(item: Any, path: Path) -> None:
        if isinstance(item, list):
            for index, child in enumerate(item):
                walk(child, (*path, str(index)))
        elif isinstance(item, dict):
            if isinstance(item.get("custom_id"), str):
                found.append(((*path, "custom_id"), item["custom_id"]))
            for key in ("components", "component", "accessory"):
                if key in item:
                    walk(item[key], (*path, key))

    walk(components, ())
    return found


def _unique_custom_ids(components: Any, path: Path, out: list[Problem]) -> None:
    seen: set[str] = set()
    for where, custom_id in _custom_ids(components):
        if custom_id in seen:
            out.append(
                Problem((*path, *where), "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
            )
        seen.add(custom_id)


def _count_components(components: Any) -> int:
    if isinstance(components, list):
        return sum(_count_components(c) for c in components)
    if isinstance(components, dict):
        return 1 + sum(_count_components(components.get(k)) for k in ("components", "component", "accessory"))
    return 0


# -- messages ------------------------------------------------------------------------------------------------------

_EMBED_URL = Text(0, 2048)
EMBED_RULE = Obj(
    {
        "title": Text(0, 256),
        "type": Text(),
        "description": Text(0, 4096),
        "url": _EMBED_URL,
        "timestamp": Text(),
        "color": Integer(0, 0xFFFFFF),
        "footer": Obj({"text": Text(0, 2048), "icon_url": _EMBED_URL}),
        "image": Obj({"url": _EMBED_URL}),
        "thumbnail": Obj({"url": _EMBED_URL}),
        "video": Obj({"url": _EMBED_URL}),
        "provider": Obj({"name": Text(0, 256), "url": _EMBED_URL}),
        "author": Obj({"name": Text(0, 256), "url": _EMBED_URL, "icon_url": _EMBED_URL}),
        "fields": Items(
            Obj({"name": Text(1, 256), "value": Text(1, 1024), "inline": boolean}, required=("name", "value")), 25
        ),
    }
)


def embed_characters(embeds: Sequence[Any]) -> int:
    """The characters that count towards :data:`EMBED_TOTAL_MAX`."""
    total = 0
    for embed in embeds:
        if not isinstance(embed, dict):
            continue
        total += len(str(embed.get("title") or "")) + len(str(embed.get("description") or ""))
        total += len(str((embed.get("footer") or {}).get("text") or ""))
        total += len(str((embed.get("author") or {}).get("name") or ""))
        for item in embed.get("fields") or ():
            if isinstance(item, dict):
                total += len(str(item.get("name") or "")) + len(str(item.get("value") or ""))
    return total


def _allowed_mentions_rules(allowed: dict[str, Any], path: Path, out: list[Problem]) -> None:
    parse = allowed.get("parse") or []
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            out.append(
                Problem(
                    (*path, "parse"),
                    "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                    f'parse:["{kind}"] and {kind}: [ids] are mutually exclusive.',
                )
            )


ALLOWED_MENTIONS_RULE = Obj(
    {
        "parse": Items(
            Text(
                check=lambda v, p, o: (
                    None
                    if v in ("users", "roles", "everyone")
                    else o.append(
                        Problem(p, "BASE_TYPE_CHOICES", "Value must be one of ('users', 'roles', 'everyone').")
                    )
                )
            )
        ),
        "users": Items(SNOWFLAKE, 100),
        "roles": Items(SNOWFLAKE, 100),
        "replied_user": boolean,
    },
    checks=(_allowed_mentions_rules,),
)

ATTACHMENT_RULE = Obj(
    {
        "id": SNOWFLAKE,
        "filename": Text(1, 1024),
        "description": Text(0, 1024),
        "title": Text(0, 1024),
        "is_spoiler": boolean,
    },
    required=("id",),
)


def _message_rules(message: dict[str, Any], path: Path, out: list[Problem]) -> None:
    embeds = message.get("embeds")
    if isinstance(embeds, list) and embed_characters(embeds) > EMBED_TOTAL_MAX:
        out.append(
            Problem(
                (*path, "embeds"), "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"
            )
        )
    components = message.get("components")
    if not isinstance(components, list):
        return
    flags = message.get("flags")
    if isinstance(flags, int) and flags & FLAG_IS_COMPONENTS_V2:
        Items(_V2_TOP, COMPONENTS_V2_MAX)(components, (*path, "components"), out)
        if _count_components(components) > COMPONENTS_V2_MAX:
            out.append(
                Problem(
                    (*path, "components"), "BASE_TYPE_MAX_LENGTH", f"Must be {COMPONENTS_V2_MAX} or fewer in length."
                )
            )
        for key in ("content", "embeds"):
            if message.get(key):
                out.append(
                    Problem(
                        (*path, key),
                        "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                        "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
                    )
                )
    else:
        Items(MESSAGE_ROW, ACTION_ROWS_MAX)(components, (*path, "components"), out)
    _unique_custom_ids(components, (*path, "components"), out)


def _message(**extra: Check) -> Obj:
    return Obj(
        {
            "content": Text(0, MESSAGE_CONTENT_MAX),
            "embeds": Items(EMBED_RULE, EMBEDS_MAX),
            "allowed_mentions": ALLOWED_MENTIONS_RULE,
            "attachments": Items(ATTACHMENT_RULE, ATTACHMENTS_MAX),
            "flags": Integer(0),
            "tts": boolean,
            **extra,
        },
        checks=(_message_rules,),
    )


MESSAGE_CREATE = _message(
    sticker_ids=Items(SNOWFLAKE, 3),
    message_reference=Obj(
        {
            "message_id": SNOWFLAKE,
            "channel_id": SNOWFLAKE,
            "guild_id": SNOWFLAKE,
            "fail_if_not_exists": boolean,
            "type": Integer(choices=(0, 1)),
        },
        required=("message_id",),
    ),
    nonce=lambda v, p, o: (Text(0, 25) if isinstance(v, str) else Integer(-(2**63), 2**63 - 1))(v, p, o),
    enforce_nonce=boolean,
)
"""POST /channels/{id}/messages."""
MESSAGE_EDIT = _message()
"""PATCH /channels/{id}/messages/{id}, and the webhook's and interaction's edits of their messages."""
WEBHOOK_MESSAGE = _message(username=Text(1, 80), avatar_url=Text(0, 2048), thread_name=Text(0, 100))
"""POST /webhooks/{application}/{token} (interaction follow-ups)."""

# -- interaction callbacks ------------------------------------------------------------------------------------------

CB_MESSAGE, CB_DEFER, CB_DEFER_UPDATE, CB_UPDATE, CB_AUTOCOMPLETE, CB_MODAL = 4, 5, 6, 7, 8, 9


def _text_input_rules(text_input: dict[str, Any], path: Path, out: list[Problem]) -> None:
    low, high = text_input.get("min_length"), text_input.get("max_length")
    if low is not None and high is not None and low > high:
        out.append(
            Problem(
                (*path, "min_length"),
                "TEXT_INPUT_LENGTH_INVALID",
                "min_length must be less than or equal to max_length",
            )
        )
    value = text_input.get("value")
    if isinstance(value, str) and isinstance(high, int) and len(value) > high:
        out.append(Problem((*path, "value"), "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length."))


def _text_input(*, label_required: bool) -> Obj:
    return Obj(
        {
            "type": Integer(choices=(TEXT_INPUT,)),
            "id": Integer(0, COMPONENT_ID_MAX),
            "custom_id": _CUSTOM_ID,
            "style": Integer(choices=(1, 2)),
            "label": Text(1, TEXT_INPUT_LABEL_MAX),
            "value": Text(0, 4000),
            "placeholder": Text(0, 100),
            "required": boolean,
            "min_length": Integer(0, 4000),
            "max_length": Integer(1, 4000),
        },
        required=("type", "custom_id", "style", *(("label",) if label_required else ())),
        checks=(_text_input_rules,),
    )


MODAL_ROW = Obj(
    {
        "type": Integer(choices=(ROW,)),
        "id": Integer(0, COMPONENT_ID_MAX),
        "components": Items(_text_input(label_required=True), 1, 1),
    },
    required=("type", "components"),
)
LABEL_RULE = Obj(
    {
        "type": Integer(choices=(LABEL,)),
        "id": Integer(0, COMPONENT_ID_MAX),
        "label": Text(1, TEXT_INPUT_LABEL_MAX),
        "description": Text(1, 100),
        "component": ByType(
            {
                TEXT_INPUT: _text_input(label_required=False),
                STRING_SELECT: STRING_SELECT_RULE,
                **{k: AUTO_SELECT_RULE for k in AUTO_SELECTS},
            }
        ),
    },
    required=("type", "label", "component"),
)


def _modal_rules(modal: dict[str, Any], path: Path, out: list[Problem]) -> None:
    _unique_custom_ids(modal.get("components"), (*path, "components"), out)


MODAL = Obj(
    {
        "custom_id": _CUSTOM_ID,
        "title": Text(1, MODAL_TITLE_MAX),
        "components": Items(
            ByType({ROW: MODAL_ROW, LABEL: LABEL_RULE, TEXT_DISPLAY: TEXT_DISPLAY_RULE}), MODAL_COMPONENTS_MAX, 1
        ),
    },
    required=("custom_id", "title", "components"),
    checks=(_modal_rules,),
)


def _choice_value(value: Any, path: Path, out: list[Problem]) -> None:
    """An autocomplete choice's value: a string choice's up to 100 characters, a number's within Int53."""
    rule: Check = Text(0, CHOICE_STRING_VALUE_MAX) if isinstance(value, str) else Number(-INT53_MAX, INT53_MAX)
    rule(value, path, out)


AUTOCOMPLETE = Obj(
    {
        "choices": Items(
            Obj(
                {
                    "name": Text(1, CHOICE_NAME_MAX),
                    "name_localizations": localized(Text(1, CHOICE_NAME_MAX)),
                    "value": _choice_value,
                },
                required=("name", "value"),
            ),
            COMMAND_CHOICES_MAX,
        )
    }
)


_CALLBACK_DATA: dict[int, Check] = {
    CB_MESSAGE: MESSAGE_EDIT,
    CB_DEFER: MESSAGE_EDIT,
    CB_UPDATE: MESSAGE_EDIT,
    CB_DEFER_UPDATE: MESSAGE_EDIT,
    CB_AUTOCOMPLETE: AUTOCOMPLETE,
    CB_MODAL: MODAL,
}
"""The rule of each callback type's ``data``."""


def _callback_data(callback: dict[str, Any], path: Path, out: list[Problem]) -> None:
    kind, data = callback.get("type"), callback.get("data")
    rule = _CALLBACK_DATA.get(kind) if isinstance(kind, int) else None
    if rule is None:
        return
    if data is None:
        if kind in (CB_AUTOCOMPLETE, CB_MODAL):
            out.append(Problem((*path, "data"), "BASE_TYPE_REQUIRED", "This field is required"))
        return
    rule(data, (*path, "data"), out)


INTERACTION_CALLBACK = Obj(
    {"type": Integer(choices=(1, CB_MESSAGE, CB_DEFER, CB_DEFER_UPDATE, CB_UPDATE, CB_AUTOCOMPLETE, CB_MODAL, 12))},
    required=("type",),
    checks=(_callback_data,),
)
"""POST /interactions/{id}/{token}/callback."""


def message_problems(body: Any, *, route: str) -> list[Problem]:
    """What Discord refuses in a message body: ``route`` is "create" (channel message), "edit" (any edit of a
    message), or "webhook" (an interaction follow-up)."""
    rule = {"create": MESSAGE_CREATE, "edit": MESSAGE_EDIT, "webhook": WEBHOOK_MESSAGE}[route]
    return problems(rule, body or {})


def callback_problems(body: Any) -> list[Problem]:
    """What Discord refuses in an interaction callback."""
    return problems(INTERACTION_CALLBACK, body or {})


def sync_problems(body: Any) -> list[Problem]:
    """What Discord refuses in a bulk overwrite of application commands."""
    if not isinstance(body, list):
        return [Problem((), "BASE_TYPE_LIST", "Must be a list.")]
    return command_list_problems(body)


def command_problems(body: Any) -> list[Problem]:
    """What Discord refuses in the creation of one application command."""
    return [Problem(p.path[1:], p.code, p.message) for p in command_list_problems([body or {}])]
