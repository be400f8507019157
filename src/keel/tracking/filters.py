"""Parser for run-search filter and order-by expressions.

Grammar (keywords are case-insensitive)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := term ("and" term)*
    term       := "(" expr ")" | comparison
    comparison := key op value | key ["not"] "in" "(" value ("," value)* ")"
    key        := ("metrics" | "params" | "tags" | "attributes") "." name | attribute
    name       := identifier | `back-quoted` | "double-quoted"
    op         := "=" | "==" | "!=" | "<" | "<=" | ">" | ">=" | "like" | "ilike"
    value      := number | 'single-quoted' | "double-quoted"

Example: ``metrics.auc > 0.8 and params.model = 'lgbm' and tags.team = 'growth'``.

Complexity is bounded (:class:`FilterLimits`, from ``KEEL_MAX_FILTER_*``): the
length of the text, its token count, parenthesis depth and comparison count, so
a hostile expression costs bounded time and never exhausts the stack.

Hand-written because the language is tiny and every error must name the token
and its position; a parser generator would add a dependency for ~150 lines and
worse messages. Errors raise :class:`~keel.errors.BadRequest` with
``field="filter"`` and ``token``/``position`` details.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from keel.errors import BadRequest

if TYPE_CHECKING:
    from keel.config import Settings

__all__ = [
    "ATTRIBUTES",
    "And",
    "Comparison",
    "Expr",
    "FilterLimits",
    "Or",
    "OrderKey",
    "parse_filter",
    "parse_order_by",
]

Kind = Literal["metric", "param", "tag", "attribute"]

#: Run attributes a filter or order may name, with their value type.
ATTRIBUTES: dict[str, type] = {
    "run_id": str,
    "id": str,
    "name": str,
    "status": str,
    "user": str,
    "parent_run_id": str,
    "start_time": int,
    "end_time": int,
    "code_commit": str,
}
_PREFIXES: dict[str, Kind] = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_COMPARISON_OPS = {"=", "==", "!=", "<", "<=", ">", ">=", "like", "ilike"}


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """Bounds on one filter expression; defaults equal the ``KEEL_MAX_FILTER_*`` defaults."""

    max_length: int = 4000
    max_tokens: int = 400
    max_depth: int = 16
    max_terms: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> FilterLimits:
        """The limits configured in ``settings``."""
        return cls(
            max_length=settings.max_filter_length,
            max_tokens=settings.max_filter_tokens,
            max_depth=settings.max_filter_depth,
            max_terms=settings.max_filter_terms,
        )


_ESCAPE = re.compile(r"\\(.)")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)(?![\w.]))
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<backquoted>`[^`]*`)
  | (?P<op><=|>=|!=|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][\w\-/:]*(?:\.[\w\-/:]+)*\.?)
    """,
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    position: int


@dataclass(frozen=True, slots=True)
class Comparison:
    """``kind.key op value``; ``value`` is a tuple for ``in`` / ``not in``."""

    kind: Kind
    key: str
    op: str
    value: float | str | tuple[float | str, ...]


@dataclass(frozen=True, slots=True)
class And:
    """All of ``terms`` hold."""

    terms: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Any of ``terms`` holds."""

    terms: tuple[Expr, ...]


Expr = Comparison | And | Or


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One order-by key."""

    kind: Kind
    key: str
    descending: bool


def _tokenize(text: str, field: str, max_tokens: int) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if len(tokens) >= max_tokens:
            raise BadRequest(
                f"{field}: too many tokens (at most {max_tokens}) at position {position}",
                field=field,
                position=position,
                limit=max_tokens,
            )
        match = _TOKEN.match(text, position)
        if match is None:
            raise BadRequest(
                f"{field}: unexpected character {text[position]!r} at position {position}",
                field=field,
                token=text[position],
                position=position,
            )
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, field: str, limits: FilterLimits | None = None) -> None:
        self.field = field
        self.limits = limits or FilterLimits()
        if len(text) > self.limits.max_length:
            raise BadRequest(
                f"{field}: expression is {len(text)} characters; at most {self.limits.max_length}",
                field=field,
                limit=self.limits.max_length,
            )
        self.tokens = _tokenize(text, field, self.limits.max_tokens)
        self.index = 0
        self.terms = 0
        self.depth = 0

    def error(self, message: str, token: _Token | None = None) -> BadRequest:
        token = token or self.peek()
        if token is None:
            return BadRequest(f"{self.field}: {message} at end of expression", field=self.field)
        return BadRequest(
            f"{self.field}: {message}: {token.text!r} at position {token.position}",
            field=self.field,
            token=token.text,
            position=token.position,
        )

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.error("expression ends too early")
        self.index += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() == word:
            self.index += 1
            return True
        return False

    def expect_punct(self, char: str) -> None:
        token = self.take()
        if token.text != char:
            raise self.error(f"expected {char!r}", token)

    def parse_or(self) -> Expr:
        terms = [self.parse_and()]
        while self.keyword("or"):
            terms.append(self.parse_and())
        return terms[0] if len(terms) == 1 else Or(tuple(terms))

    def parse_and(self) -> Expr:
        terms = [self.parse_term()]
        while self.keyword("and"):
            terms.append(self.parse_term())
        return terms[0] if len(terms) == 1 else And(tuple(terms))

    def parse_term(self) -> Expr:
        token = self.peek()
        if token is not None and token.text == "(":
            self.depth += 1
            if self.depth > self.limits.max_depth:
                raise self.error(f"parentheses nested too deep (at most {self.limits.max_depth})")
            self.index += 1
            inner = self.parse_or()
            self.expect_punct(")")
            self.depth -= 1
            return inner
        return self.parse_comparison()

    def parse_key(self) -> tuple[Kind, str, _Token]:
        token = self.take()
        if token.kind != "word":
            raise self.error("expected a key such as metrics.auc", token)
        head, dot, rest = token.text.partition(".")
        if not dot:
            if token.text.lower() in ATTRIBUTES:
                return "attribute", token.text.lower(), token
            raise self.error("unknown key (use metrics., params., tags. or an attribute)", token)
        kind = _PREFIXES.get(head.lower())
        if kind is None:
            raise self.error("unknown key prefix", token)
        name = rest
        if not name:  # `metrics.`back-quoted`` form: the name is the next token
            quoted = self.take()
            if quoted.kind not in ("backquoted", "string"):
                raise self.error("expected a key name", quoted)
            name = quoted.text[1:-1]
        if kind == "attribute":
            name = name.lower()
            if name not in ATTRIBUTES:
                raise self.error("unknown attribute", token)
        return kind, name, token

    def parse_value(self, kind: Kind, key: str) -> float | str:
        token = self.take()
        if token.kind == "number":
            number = float(token.text)
            if kind in ("param", "tag") or (kind == "attribute" and ATTRIBUTES[key] is str):
                return token.text
            return number
        if token.kind == "string":
            # Only \\, \' and \" are escapes; anything else stays as typed
            # (decoding as "unicode_escape" would mangle non-ASCII text).
            text = _ESCAPE.sub(r"\1", token.text[1:-1])
            if kind == "metric" or (kind == "attribute" and ATTRIBUTES[key] is int):
                raise self.error(f"{kind} {key} compares with a number, not a string", token)
            return text
        raise self.error("expected a number or a quoted string", token)

    def parse_comparison(self) -> Comparison:
        self.terms += 1
        if self.terms > self.limits.max_terms:
            raise self.error(f"too many comparisons (at most {self.limits.max_terms})")
        kind, key, key_token = self.parse_key()
        negate = self.keyword("not")
        if self.keyword("in"):
            self.expect_punct("(")
            values = [self.parse_value(kind, key)]
            while (token := self.peek()) is not None and token.text == ",":
                self.index += 1
                values.append(self.parse_value(kind, key))
            self.expect_punct(")")
            return Comparison(kind, key, "not in" if negate else "in", tuple(values))
        if negate:
            raise self.error("expected 'in' after 'not'")
        op_token = self.take()
        op = op_token.text.lower()
        if op not in _COMPARISON_OPS:
            raise self.error("expected a comparison operator", op_token)
        op = "=" if op == "==" else op
        value = self.parse_value(kind, key)
        if op in ("like", "ilike") and not isinstance(value, str):
            raise self.error(f"{op} needs a quoted pattern", op_token)
        if kind == "metric" and op in ("like", "ilike"):
            raise self.error("metrics cannot be compared with like", op_token)
        return Comparison(kind, key, op, value)


def parse_filter(text: str | None, limits: FilterLimits | None = None) -> Expr | None:
    """Parse a filter expression; empty or None means no filter.

    Raises :class:`BadRequest` (``field="filter"``) on bad syntax or an expression
    over ``limits``.

    >>> parse_filter("metrics.auc > 0.8")
    Comparison(kind='metric', key='auc', op='>', value=0.8)
    """
    if text is None or not text.strip():
        return None
    parser = _Parser(text, "filter", limits)
    expr = parser.parse_or()
    if parser.peek() is not None:
        raise parser.error("unexpected token")
    return expr


def parse_order_by(items: list[str] | None) -> list[OrderKey]:
    """Parse ``["metrics.auc DESC", "start_time"]`` into order keys.

    >>> parse_order_by(["metrics.auc desc"])
    [OrderKey(kind='metric', key='auc', descending=True)]
    """
    keys: list[OrderKey] = []
    for item in items or []:
        parser = _Parser(item, "order_by")
        kind, key, _ = parser.parse_key()
        descending = False
        if parser.keyword("desc"):
            descending = True
        else:
            parser.keyword("asc")
        if parser.peek() is not None:
            raise parser.error("unexpected token")
        keys.append(OrderKey(kind, key, descending))
    return keys
