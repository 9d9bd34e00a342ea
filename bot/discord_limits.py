"""Discord's published limits on application commands, as data, and the small schema language that states them
and names each broken field as Discord does.

The limits come from Discord's OpenAPI description of its HTTP API (``specs/openapi.json`` of
github.com/discord/discord-api-spec: the ``minLength``/``maxLength``/``maxItems``/``minimum``/``maximum``/``required``
of ``ApplicationCommandUpdateRequest`` and its option and choice schemas) and, where the developer documentation is
stricter than the schema, from the documentation: the name pattern ``^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$``
in lower case, a slash command's required description, a string choice value of at most 100 characters (the schema
says 6000), required options before optional ones, unique names, 100 slash and 5 + 5 context menu commands, and the
combined size of a command.

``python -m bot check`` validates the command tree with :func:`command_list_problems` before anything is sent. The
test suite's fake Discord (tests/fakediscord/limits.py) answers the command sync with the same rules, and states its
rules for messages, components and modals in this language. Nothing here imports discord.py: the rules read the JSON
that goes over the wire.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

INVALID_FORM_BODY = 50035
"""Discord's JSON error code for a body that breaks its schema."""
INVALID_FORM_BODY_MESSAGE = "Invalid Form Body"

INT53_MAX = 2**53 - 1
"""The largest integer Discord accepts where its schema says Int53 (integer options, their choices and bounds)."""
PERMISSIONS_MAX = 2**54 - 1
SNOWFLAKE_MAX = 2**64 - 1

COMMAND_NAME_MAX = 32
COMMAND_DESCRIPTION_MAX = 100
COMMAND_OPTIONS_MAX = 25
COMMAND_CHOICES_MAX = 25
CHOICE_NAME_MAX = 100
CHOICE_STRING_VALUE_MAX = 100
COMMAND_SIZE_MAX = 8000
"""Combined characters of the name, description and value properties of one command, its options and choices."""
CHAT_INPUT_COMMANDS_MAX = 100
CONTEXT_MENU_COMMANDS_MAX = 5
"""Per type: USER commands and MESSAGE commands each."""

CHAT_INPUT, USER, MESSAGE, PRIMARY_ENTRY_POINT = 1, 2, 3, 4
OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP, OPT_STRING, OPT_INTEGER, OPT_NUMBER = 1, 2, 3, 4, 10
Path = tuple[str, ...]


@dataclass(frozen=True)
class Problem:
    """One broken field: its path in the body (``("0", "options", "2", "max_value")``) and Discord's error."""

    path: Path
    code: str
    message: str

    def __str__(self) -> str:
        return f"{'.'.join(self.path) or '(body)'}: {self.message}"


Check = Callable[[Any, Path, list[Problem]], None]


# -- the schema language: each rule checks one JSON value and appends what it finds -----------------------------


@dataclass(frozen=True)
class Text:
    """A string of ``min`` to ``max`` characters; ``check`` sees it once its length is right."""

    min: int = 0
    max: int | None = None
    check: Check | None = None

    def __call__(self, value: Any, path: Path, out: list[Problem]) -> None:
        string = Problem(path, "STRING_TYPE_CONVERT", "Could not interpret value as string.")
        if _sized(value, str, string, self.min, self.max, out) and self.check is not None:
            self.check(value, path, out)


@dataclass(frozen=True)
class Integer:
    """An integer (not a boolean) from ``min`` to ``max``, or one of ``choices``."""

    min: int | None = None
    max: int | None = None
    choices: tuple[int, ...] = ()

    def __call__(self, value: Any, path: Path, out: list[Problem]) -> None:
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)  # Discord reads integers sent as strings (permissions, snowflakes)
        if isinstance(value, bool) or not isinstance(value, int):
            out.append(Problem(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not int.'))
        elif self.choices and value not in self.choices:
            out.append(Problem(path, "BASE_TYPE_CHOICES", f"Value must be one of {set(self.choices)}."))
        elif self.max is not None and value > self.max:
            out.append(Problem(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {self.max}."))
        elif self.min is not None and value < self.min:
            out.append(Problem(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {self.min}."))


@dataclass(frozen=True)
class Number:
    """An integer or a float from ``min`` to ``max``."""

    min: float | None = None
    max: float | None = None

    def __call__(self, value: Any, path: Path, out: list[Problem]) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(Problem(path, "NUMBER_TYPE_COERCE", f'Value "{value}" is not a number.'))
        elif self.max is not None and value > self.max:
            out.append(Problem(path, "NUMBER_TYPE_MAX", f"float value should be less than or equal to {self.max}."))
        elif self.min is not None and value < self.min:
            out.append(Problem(path, "NUMBER_TYPE_MIN", f"float value should be greater than or equal to {self.min}."))


def boolean(value: Any, path: Path, out: list[Problem]) -> None:
    if not isinstance(value, bool):
        out.append(Problem(path, "BASE_TYPE_BOOLEAN", "Must be either true or false."))


SNOWFLAKE = Integer(0, SNOWFLAKE_MAX)


@dataclass(frozen=True)
class Items:
    """A list of ``min`` to ``max`` items, each under the rule ``of``."""

    of: Check
    max: int | None = None
    min: int = 0

    def __call__(self, value: Any, path: Path, out: list[Problem]) -> None:
        if _sized(value, list, Problem(path, "BASE_TYPE_LIST", "Must be a list."), self.min, self.max, out):
            for index, item in enumerate(value):
                self.of(item, (*path, str(index)), out)


@dataclass(frozen=True)
class Obj:
    """An object: ``fields`` name each key's rule (a null value passes unless the key is ``required``); keys not
    named are ignored, as Discord ignores them; ``checks`` see the whole object for rules across its fields."""

    fields: Mapping[str, Check]
    required: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()

    def __call__(self, value: Any, path: Path, out: list[Problem]) -> None:
        if not isinstance(value, dict):
            out.append(Problem(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType"))
            return
        start = len(out)
        for name in self.required:
            if value.get(name) is None:
                out.append(Problem((*path, name), "BASE_TYPE_REQUIRED", "This field is required"))
        for name, rule in self.fields.items():
            if value.get(name) is not None:
                rule(value[name], (*path, name), out)
        if len(out) == start:  # rules across fields read only fields that passed their own
            for check in self.checks:
                check(value, path, out)


@dataclass(frozen=True)
class ByType:
    """An object whose rule depends on its integer ``type`` (components, command options)."""

    variants: Mapping[int, Check]
    key: str = "type"

    def __call__(self, value: Any, path: Path, out: list[Problem]) -> None:
        kind = value.get(self.key) if isinstance(value, dict) else None
        rule = self.variants.get(kind) if isinstance(kind, int) else None
        if rule is None:
            choices = set(self.variants)
            out.append(Problem((*path, self.key), "BASE_TYPE_CHOICES", f"Value must be one of {choices}."))
            return
        rule(value, path, out)


def _sized(value: Any, kind: type[Sized], wrong_type: Problem, low: int, high: int | None, out: list[Problem]) -> bool:
    """Whether ``value`` is a ``kind`` (a string or a list) of ``low`` to ``high`` items; if not, ``out`` gets
    ``wrong_type`` or the length problem (at ``wrong_type``'s path)."""
    if not isinstance(value, kind):
        out.append(wrong_type)
        return False
    if (high is not None and len(value) > high) or len(value) < low:
        out.append(_length_problem(wrong_type.path, low, high))
        return False
    return True


def _length_problem(path: Path, low: int, high: int | None) -> Problem:
    if high is None:
        return Problem(path, "BASE_TYPE_MIN_LENGTH", f"Must be {low} or more in length.")
    if low <= 0:
        return Problem(path, "BASE_TYPE_MAX_LENGTH", f"Must be {high} or fewer in length.")
    return Problem(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


# -- command names -----------------------------------------------------------------------------------------------

_DEVANAGARI = ((0x0900, 0x097F), (0xA8E0, 0xA8FF), (0x11B00, 0x11B5F))
_THAI = ((0x0E00, 0x0E7F),)


def _name_char(char: str) -> bool:
    """One character of ``^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]$``: a letter, a number, ``-``, ``_``, or a
    character of the Devanagari or Thai script (their vowel signs are marks, not letters)."""
    if char in "-_" or unicodedata.category(char)[0] in "LN":
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in (*_DEVANAGARI, *_THAI))


def slash_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a slash command, subcommand or option, or None: 1-32 characters of the pattern
    above, and lower case where the character has a lower case."""
    if not 1 <= len(name) <= COMMAND_NAME_MAX or not all(_name_char(c) for c in name):
        return "Command name is invalid"
    if name != name.lower():
        return "Command name is invalid"
    return None


def _slash_name(value: str, path: Path, out: list[Problem]) -> None:
    reason = slash_name_problem(value)
    if reason is not None:
        out.append(Problem(path, "APPLICATION_COMMAND_INVALID_NAME", reason))


# -- application commands ----------------------------------------------------------------------------------------


def localized(rule: Text) -> Check:
    def check(value: Any, path: Path, out: list[Problem]) -> None:
        if not isinstance(value, dict):
            out.append(Problem(path, "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"))
            return
        for locale, text in value.items():
            rule(text, (*path, str(locale)), out)

    return check


_OPTION_NAME = Text(1, COMMAND_NAME_MAX, _slash_name)
_DESCRIPTION = Text(1, COMMAND_DESCRIPTION_MAX)
_OPTION_COMMON: dict[str, Check] = {
    "name": _OPTION_NAME,
    "name_localizations": localized(_OPTION_NAME),
    "description": _DESCRIPTION,
    "description_localizations": localized(_DESCRIPTION),
    "required": boolean,
}


def _choices(value_rule: Check) -> Items:
    return Items(
        Obj(
            {
                "name": Text(1, CHOICE_NAME_MAX),
                "name_localizations": localized(Text(1, CHOICE_NAME_MAX)),
                "value": value_rule,
            },
            required=("name", "value"),
        ),
        COMMAND_CHOICES_MAX,
    )


def _bounds_in_order(option: dict[str, Any], path: Path, out: list[Problem]) -> None:
    for low, high in (("min_value", "max_value"), ("min_length", "max_length")):
        if option.get(low) is not None and option.get(high) is not None and option[low] > option[high]:
            out.append(
                Problem(
                    (*path, low),
                    "APPLICATION_COMMAND_OPTION_BOUNDS_INVALID",
                    f"{low} must be less than or equal to {high}",
                )
            )
    if option.get("autocomplete") and option.get("choices"):
        out.append(
            Problem(
                (*path, "autocomplete"),
                "APPLICATION_COMMAND_AUTOCOMPLETE_CHOICES",
                "Autocomplete cannot be set on an option with choices",
            )
        )


def _value_option(kind: int, **extra: Check) -> Obj:
    return Obj(
        {"type": Integer(choices=(kind,)), **_OPTION_COMMON, **extra},
        required=("type", "name", "description"),
        checks=(_bounds_in_order,),
    )


_INT53 = Integer(-INT53_MAX, INT53_MAX)
_DOUBLE53 = Number(-(2.0**53), 2.0**53)  # the documentation's range of a number option's values and bounds
_VALUE_OPTIONS: dict[int, Check] = {
    OPT_STRING: _value_option(
        OPT_STRING,
        autocomplete=boolean,
        choices=_choices(Text(0, CHOICE_STRING_VALUE_MAX)),
        min_length=Integer(0, 6000),
        max_length=Integer(1, 6000),
    ),
    OPT_INTEGER: _value_option(
        OPT_INTEGER, autocomplete=boolean, choices=_choices(_INT53), min_value=_INT53, max_value=_INT53
    ),
    OPT_NUMBER: _value_option(
        OPT_NUMBER, autocomplete=boolean, choices=_choices(_DOUBLE53), min_value=_DOUBLE53, max_value=_DOUBLE53
    ),
    5: _value_option(5),  # boolean
    6: _value_option(6),  # user
    7: _value_option(7, channel_types=Items(Integer(0, 16))),
    8: _value_option(8),  # role
    9: _value_option(9),  # mentionable
    11: _value_option(11),  # attachment
}


def _option_key(option: dict[str, Any]) -> object:
    name = option.get("name")
    return name if isinstance(name, str) else None


def _command_key(command: dict[str, Any]) -> tuple[Any, Any]:
    return (command.get("type") or CHAT_INPUT, command.get("name"))


def _unique_names(
    items: list[Any], key: Callable[[dict[str, Any]], object], duplicate: Problem, out: list[Problem]
) -> None:
    """``out`` gets ``duplicate`` (at ``<index>.name`` below its path) for each object in ``items`` whose ``key``
    an earlier one has; a key of None is never a duplicate."""
    seen: set[object] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        found = key(item)
        if found is not None and found in seen:
            out.append(Problem((*duplicate.path, str(index), "name"), duplicate.code, duplicate.message))
        seen.add(found)


def _option_level(options: Any, path: Path, out: list[Problem]) -> None:
    """Rules across one level of options: unique names, required ones first, no subcommands beside values."""
    if not isinstance(options, list):
        return
    optional_seen = False
    kinds = {o.get("type") for o in options if isinstance(o, dict)}
    if kinds & {OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP} and kinds - {OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP}:
        out.append(
            Problem(
                path,
                "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                "Sub-command and sub-command group option types are mutually exclusive to all other types",
            )
        )
    duplicate = Problem(path, "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME", "Option names must be unique")
    _unique_names(options, _option_key, duplicate, out)
    for index, option in enumerate(options):
        if not isinstance(option, dict):
            continue
        if option.get("type") in (OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP):
            continue
        if option.get("required"):
            if optional_seen:
                out.append(
                    Problem(
                        (*path, str(index), "required"),
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    )
                )
        else:
            optional_seen = True


@dataclass(frozen=True)
class _Level:
    """A list of options of one nesting level."""

    of: Check

    def __call__(self, value: Any, path: Path, out: list[Problem]) -> None:
        Items(self.of, COMMAND_OPTIONS_MAX)(value, path, out)
        _option_level(value, path, out)


_SUB_COMMAND = Obj(
    {"type": Integer(choices=(OPT_SUB_COMMAND,)), **_OPTION_COMMON, "options": _Level(ByType(_VALUE_OPTIONS))},
    required=("type", "name", "description"),
)
_SUB_COMMAND_GROUP = Obj(
    {
        "type": Integer(choices=(OPT_SUB_COMMAND_GROUP,)),
        **_OPTION_COMMON,
        "options": _Level(ByType({OPT_SUB_COMMAND: _SUB_COMMAND})),
    },
    required=("type", "name", "description"),
)
_TOP_OPTIONS = _Level(
    ByType({**_VALUE_OPTIONS, OPT_SUB_COMMAND: _SUB_COMMAND, OPT_SUB_COMMAND_GROUP: _SUB_COMMAND_GROUP})
)


def _command_size(command: dict[str, Any]) -> int:
    """Characters of every name, description and choice value (the longest localization of each counts)."""

    def longest(item: dict[str, Any], key: str) -> int:
        values = [str(item.get(key) or ""), *map(str, (item.get(f"{key}_localizations") or {}).values())]
        return max(map(len, values))

    def walk(item: dict[str, Any]) -> int:
        size = longest(item, "name") + longest(item, "description")
        for choice in item.get("choices") or ():
            size += longest(choice, "name") + len(str(choice.get("value", "")))
        return size + sum(walk(o) for o in item.get("options") or () if isinstance(o, dict))

    return walk(command)


def _command_rules(command: dict[str, Any], path: Path, out: list[Problem]) -> None:
    kind = command.get("type") or CHAT_INPUT
    name = command.get("name")
    if kind == CHAT_INPUT:
        if isinstance(name, str):
            _slash_name(name, (*path, "name"), out)
        description = command.get("description")
        if not description:
            out.append(Problem((*path, "description"), "BASE_TYPE_REQUIRED", "This field is required"))
        for locale, text in (command.get("name_localizations") or {}).items():
            if isinstance(text, str):
                _slash_name(text, (*path, "name_localizations", str(locale)), out)
    elif kind in (USER, MESSAGE):
        if command.get("description"):
            out.append(
                Problem(
                    (*path, "description"),
                    "APPLICATION_COMMAND_DESCRIPTION_INVALID",
                    "Context menu commands cannot have description",
                )
            )
        if command.get("options"):
            out.append(
                Problem(
                    (*path, "options"),
                    "APPLICATION_COMMAND_OPTIONS_INVALID",
                    "Context menu commands cannot have options",
                )
            )
    if _command_size(command) > COMMAND_SIZE_MAX:
        out.append(Problem(path, "APPLICATION_COMMAND_TOO_LARGE", f"Command exceeds maximum size ({COMMAND_SIZE_MAX})"))


COMMAND = Obj(
    {
        "type": Integer(choices=(CHAT_INPUT, USER, MESSAGE, PRIMARY_ENTRY_POINT)),
        "name": Text(1, COMMAND_NAME_MAX),
        "name_localizations": localized(Text(1, COMMAND_NAME_MAX)),
        "description": Text(0, COMMAND_DESCRIPTION_MAX),
        "description_localizations": localized(_DESCRIPTION),
        "options": _TOP_OPTIONS,
        "default_member_permissions": Integer(0, PERMISSIONS_MAX),
        "dm_permission": boolean,
        "nsfw": boolean,
        "contexts": Items(Integer(choices=(0, 1, 2)), min=1),
        "integration_types": Items(Integer(choices=(0, 1)), min=1),
    },
    required=("name",),
    checks=(_command_rules,),
)


def _command_list_rules(commands: Any, path: Path, out: list[Problem]) -> None:
    if not isinstance(commands, list):
        return
    duplicate = Problem(path, "APPLICATION_COMMANDS_DUPLICATE_NAME", "Application command names must be unique")
    _unique_names(commands, _command_key, duplicate, out)
    counts = Counter(_command_key(command)[0] for command in commands if isinstance(command, dict))
    for kind, limit in (
        (CHAT_INPUT, CHAT_INPUT_COMMANDS_MAX),
        (USER, CONTEXT_MENU_COMMANDS_MAX),
        (MESSAGE, CONTEXT_MENU_COMMANDS_MAX),
    ):
        if counts.get(kind, 0) > limit:
            out.append(
                Problem(
                    path,
                    "APPLICATION_COMMANDS_TOO_MANY",
                    f"Maximum number of application commands of type {kind} reached ({limit})",
                )
            )


COMMAND_LIST = Items(COMMAND, CHAT_INPUT_COMMANDS_MAX + 2 * CONTEXT_MENU_COMMANDS_MAX + 20)
"""PUT /applications/{id}/commands (bulk overwrite); the per-type counts are checked below."""


# -- entry points --------------------------------------------------------------------------------------------------


def problems(rule: Check, body: Any) -> list[Problem]:
    """Every broken field of ``body`` under ``rule``."""
    out: list[Problem] = []
    rule(body, (), out)
    return out


def command_list_problems(commands: list[dict[str, Any]]) -> list[Problem]:
    """What Discord would refuse in a bulk overwrite of these commands (the JSON ``tree.sync()`` sends)."""
    out = problems(COMMAND_LIST, commands)
    _command_list_rules(commands, (), out)
    return out


def discord_errors(found: Sequence[Problem]) -> dict[str, Any]:
    """The ``errors`` object of Discord's 50035 answer: nested by path, each leaf ``{"_errors": [...]}``."""
    tree: dict[str, Any] = {}
    for problem in found:
        node = tree
        for key in problem.path:
            node = node.setdefault(key, {})
        node.setdefault("_errors", []).append({"code": problem.code, "message": problem.message})
    return tree


def problems_from_errors(errors: Mapping[str, Any], path: Path = ()) -> list[Problem]:
    """The problems a Discord ``errors`` object names (the inverse of :func:`discord_errors`)."""
    found: list[Problem] = []
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            found += [
                Problem(path, str(e.get("code", "")), str(e.get("message", ""))) for e in value if isinstance(e, dict)
            ]
        elif isinstance(value, dict):
            found += problems_from_errors(value, (*path, str(key)))
    return found
