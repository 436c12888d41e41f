"""Label and field selectors, parsed and matched like the real API server.

Grammar and matching rules follow docs/protocol.md, "Selectors" (apimachinery
``pkg/labels/selector.go``
and ``pkg/fields/selector.go``). Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from attrs import frozen

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelRequirement",
    "LabelSelector",
    "SelectorError",
    "field_value",
    "parse_field_selector",
    "parse_label_selector",
]


class SelectorError(ValueError):
    """A selector could not be parsed (the server answers 400 BadRequest)."""


# Label keys: optional DNS-subdomain prefix, then a name of at most 63 characters
# [apimachinery validation.IsQualifiedName]; values: at most 63 characters, same charset.
_NAME_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _valid_key(key: str) -> bool:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _PREFIX_RE.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(_NAME_RE.match(name))


def _valid_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and bool(_NAME_RE.match(value)))


@frozen
class LabelRequirement:
    """One label requirement: ``key op values``."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Tell whether ``labels`` satisfy this requirement (§10.1 table)."""
        op = self.operator
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        if self.key not in labels:
            return op in ("!=", "notin")
        value = labels[self.key]
        if op in ("=", "in"):
            return value in self.values
        if op in ("!=", "notin"):
            return value not in self.values
        try:
            have = int(value)
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op == ">" else have < want


@frozen
class LabelSelector:
    """A parsed label selector: all requirements must hold."""

    requirements: tuple[LabelRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the selector matches everything."""
        return not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Tell whether an object with ``labels`` is selected."""
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)


_SPECIAL = frozenset("!=(),<> \t\r\n")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif text.startswith(("==", "!="), i):
            tokens.append(text[i : i + 2])
            i += 2
        elif ch in "!=(),<>":
            tokens.append(ch)
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in _SPECIAL:
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


_OPERATORS = frozenset({"=", "==", "!=", "in", "notin", ">", "<"})


def parse_label_selector(text: str) -> LabelSelector:
    """Parse a label selector string; raise `SelectorError` like the server's 400."""
    tokens = _tokenize(text)
    if not tokens:
        return LabelSelector()
    reqs: list[LabelRequirement] = []
    pos = 0

    def fail(why: str) -> SelectorError:
        return SelectorError(f"unable to parse requirement: {why}")

    def take() -> str | None:
        nonlocal pos
        if pos >= len(tokens):
            return None
        tok = tokens[pos]
        pos += 1
        return tok

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def key_token(tok: str | None) -> str:
        if tok is None or tok in _SPECIAL or tok in ("==", "!="):
            raise fail(f"found '{tok or ''}', expected: identifier")
        if not _valid_key(tok):
            raise fail(f"invalid label key {tok!r}")
        return tok

    def value_token(allow_empty: bool) -> str:
        tok = peek()
        if tok is None or tok in (",", ")"):
            if allow_empty:
                return ""
            raise fail(f"found '{tok or ''}', expected: identifier")
        if tok in _SPECIAL or tok in ("==", "!="):
            raise fail(f"found '{tok}', expected: identifier")
        take()
        if not _valid_value(tok):
            raise fail(f"invalid label value {tok!r}")
        return tok

    while True:
        tok = take()
        if tok == "!":
            reqs.append(LabelRequirement(key_token(take()), "!"))
        else:
            key = key_token(tok)
            op = peek()
            if op is None or op == ",":
                reqs.append(LabelRequirement(key, "exists"))
            elif op in _OPERATORS:
                take()
                if op in ("=", "==", "!="):
                    reqs.append(
                        LabelRequirement(key, "!=" if op == "!=" else "=", (value_token(True),))
                    )
                elif op in (">", "<"):
                    value = value_token(False)
                    if not re.fullmatch(r"-?[0-9]+", value):
                        raise fail(
                            f"for 'Gt', 'Lt' operators, the value must be an integer: {value}"
                        )
                    reqs.append(LabelRequirement(key, op, (value,)))
                else:
                    if take() != "(":
                        raise fail("found '', expected: '('")
                    values: list[str] = []
                    while True:
                        values.append(value_token(True))
                        nxt = take()
                        if nxt == ")":
                            break
                        if nxt != ",":
                            raise fail(f"found '{nxt or ''}', expected: ',' or ')'")
                    if values == [""]:
                        raise fail("for 'in', 'notin' operators, values set can't be empty")
                    reqs.append(LabelRequirement(key, op, tuple(values)))
            else:
                raise fail(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        nxt = take()
        if nxt is None:
            break
        if nxt != ",":
            raise fail(f"found '{nxt}', expected: ','")
    return LabelSelector(tuple(reqs))


@frozen
class FieldRequirement:
    """One field term: ``field = value`` or ``field != value``."""

    field: str
    operator: str  # "=" or "!="
    value: str


@frozen
class FieldSelector:
    """A parsed field selector: all terms must hold."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the selector matches everything."""
        return not self.requirements

    @property
    def fields(self) -> tuple[str, ...]:
        """The field paths the selector uses."""
        return tuple(r.field for r in self.requirements)

    def matches(self, get: Callable[[str], str]) -> bool:
        """Tell whether an object whose field values ``get`` returns is selected."""
        for r in self.requirements:
            have = get(r.field)
            if (have == r.value) != (r.operator == "="):
                return False
        return True


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            if i + 1 >= len(value) or value[i + 1] not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence in {value!r}")
            out.append(value[i + 1])
            i += 2
            continue
        if ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped {ch!r} in value {value!r}")
        out.append(ch)
        i += 1
    return "".join(out)


def parse_field_selector(text: str) -> FieldSelector:
    """Parse a field selector string; raise `SelectorError` like the server's 400."""
    if text.strip() == "":
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        found = None
        i = 0
        while i < len(term) and found is None:
            if term[i] == "\\":
                i += 2
                continue
            for op in ("!=", "==", "="):
                if term.startswith(op, i):
                    found = (term[:i], op, term[i + len(op) :])
                    break
            i += 1
        if found is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        lhs, op, rhs = found
        reqs.append(FieldRequirement(lhs.strip(), "!=" if op == "!=" else "=", _unescape(rhs)))
    return FieldSelector(tuple(reqs))


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """Return the string form of a dotted field path, ``""`` when missing (§10.2)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return ""
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if cur is None or isinstance(cur, (dict, list)):
        return ""
    return str(cur)
