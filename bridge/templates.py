"""Message templates (issue 12), the pure part: ``/sms template…`` grammar, ``#name key=value`` use, filling.

Owns: template names, ``{placeholder}`` syntax (``{first_name}`` and ``{name}`` come from the recipient's contact,
every other one from ``key=value`` words), the errors naming what is missing, and the wording of the answers.
Must not import: aiohttp, Slack packages, storage, ``handlers``. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bridge.model import Contact, Template
from bridge.slack_text import escape_mrkdwn
from sw_api.text import MAX_BODY_CHARS, format_number

CONTACT_FIELDS = ("first_name", "name")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VALUE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"]*)"|“([^”]*)”|(\S+))')
TEMPLATE_USAGE = ("Use `/sms template add late Running {minutes} min late, sorry {first_name}!`, "
                  "`/sms template remove late` or `/sms templates`; send one with `/sms Dana #late minutes=10`.")


class TemplateError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class TemplateCommand:
    action: str  # "add" | "remove" | "list"
    name: str = ""
    body: str = ""


def check_template_name(name: str) -> str:
    name = name.lstrip("#").lower()
    if not _NAME.match(name):
        raise TemplateError(f"`{escape_mrkdwn(name)}` is not a template name: use up to 32 letters, digits, `-` "
                            "or `_`, e.g. `late`.")
    return name


def placeholders(body: str) -> list[str]:
    """The placeholder names of ``body``, in order of first appearance."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(body)))


def parse_template_command(word: str, rest: str) -> TemplateCommand:
    if word == "templates":
        return TemplateCommand("list")
    verb, _, tail = rest.strip().partition(" ")
    verb = verb.lower()
    if verb == "add":
        name, _, body = tail.strip().partition(" ")
        if not name:
            raise TemplateError(f"Which template? {TEMPLATE_USAGE}")
        body = body.strip()
        if not body:
            raise TemplateError(f"The template `{check_template_name(name)}` needs a text. {TEMPLATE_USAGE}")
        if len(body) > MAX_BODY_CHARS:
            raise TemplateError(f"The template is {len(body)} characters; an SMS allows at most {MAX_BODY_CHARS}.")
        return TemplateCommand("add", check_template_name(name), body)
    if verb in ("remove", "delete", "rm"):
        if not tail.strip():
            raise TemplateError(f"Which template? {TEMPLATE_USAGE}")
        return TemplateCommand("remove", check_template_name(tail.strip()))
    if verb in ("", "list"):
        return TemplateCommand("list")
    raise TemplateError(f"`/sms template {escape_mrkdwn(verb)}` is not a command. {TEMPLATE_USAGE}")


@dataclass(frozen=True, slots=True)
class TemplateUse:
    name: str
    values: dict[str, str] = field(default_factory=dict)


def named(text: str) -> str | None:
    """The template name ``text`` starts with (``#late …``), or None. Whether it is one is the store's to say."""
    stripped = text.strip()
    if not stripped.startswith("#"):
        return None
    head = stripped.split(None, 1)[0][1:].lower()
    return head if _NAME.match(head) else None


def parse_use(text: str) -> TemplateUse | None:
    """``#late minutes=10 place="the usual"`` → the template and its values; None if ``text`` is not a ``#name``
    (then it is sent as typed). ``TemplateError`` for a word after the name that is not ``key=value``."""
    stripped = text.strip()
    if not stripped.startswith("#") or len(stripped) < 2 or stripped[1].isspace():
        return None
    head, _, tail = stripped.partition(" ")
    name = check_template_name(head[1:]) if _NAME.match(head[1:].lower()) else None
    if name is None:
        return None
    values: dict[str, str] = {}
    position = 0
    tail = tail.strip()
    while position < len(tail):
        if tail[position].isspace():
            position += 1
            continue
        found = _VALUE.match(tail, position)
        if found is None:
            word = tail[position:].split(None, 1)[0]
            raise TemplateError(f"`{escape_mrkdwn(word)}` is not a `key=value` word. After `#{name}` give only "
                                'values, e.g. `minutes=10` or `place="the usual spot"`. Nothing was sent.')
        key = found.group(1)
        values[key] = next(g for g in found.groups()[1:] if g is not None)
        position = found.end()
    return TemplateUse(name, values)


def first_name(contact: Contact) -> str:
    return contact.name.split()[0]


def fill(template: Template, values: Mapping[str, str], number: str, contact: Contact | None) -> str:
    """The text to send; ``TemplateError`` naming every placeholder without a value (nothing is sent)."""
    given = dict(values)
    wanted = placeholders(template.body)
    contact_wanted = [p for p in wanted if p in CONTACT_FIELDS and p not in given]
    if contact_wanted and contact is None:
        raise TemplateError(
            f"The template `{template.name}` uses {', '.join('{' + p + '}' for p in contact_wanted)}, but "
            f"{format_number(number)} is not a contact. Add it (`/sms contact add NAME {format_number(number)}`) "
            f"or give {' '.join(p + '=…' for p in contact_wanted)}. Nothing was sent.")
    if contact is not None:
        given.setdefault("first_name", first_name(contact))
        given.setdefault("name", contact.name)
    missing = [p for p in wanted if p not in given]
    if missing:
        raise TemplateError(
            f"The template `{template.name}` needs a value for {', '.join('{' + p + '}' for p in missing)}: add "
            f"{' '.join(p + '=…' for p in missing)}. Nothing was sent.")
    unknown = sorted(set(values) - set(wanted))
    if unknown:
        raise TemplateError(f"The template `{template.name}` has no {', '.join('{' + u + '}' for u in unknown)}. "
                            f"Its text: {escape_mrkdwn(template.body)}. Nothing was sent.")
    return _PLACEHOLDER.sub(lambda m: given[m.group(1)], template.body)


def fill_contact(template: Template, contact: Contact | None) -> str:
    """The template with only ``{first_name}`` / ``{name}`` filled (from ``contact``, if any): what the compose
    modal puts in the message field; the other placeholders stay for the person to fill in."""
    if contact is None:
        return template.body
    given = {"first_name": first_name(contact), "name": contact.name}
    return _PLACEHOLDER.sub(lambda m: given.get(m.group(1), m.group(0)), template.body)


def no_template_text(name: str, known: Sequence[Template]) -> str:
    names = ", ".join(f"`#{t.name}`" for t in known) or "none yet"
    return f"⚠️ There is no template `#{name}` (stored: {names}). Nothing was sent."


def listing_text(templates: Sequence[Template]) -> str:
    if not templates:
        return "No templates yet. " + TEMPLATE_USAGE
    lines = ["*Templates*"]
    lines += [f"• `#{t.name}`: {escape_mrkdwn(t.body)}" for t in templates]
    lines.append("_Send one with `/sms Dana #NAME key=value`; {first_name} and {name} come from the contact._")
    return "\n".join(lines)
