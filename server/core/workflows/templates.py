"""Templates in step configs: `{{ input.name }}`, `{{ steps.fetch.output.json.id }}`, rendered in
Jinja2's sandbox (never `eval`), with StrictUndefined, so a misspelt name fails instead of
rendering as an empty string.

What a template may be is narrower than Jinja2: text with `{{ expression }}` parts only (no
`{% %}` statements, so no loops or assignments), no `~` concatenation (write `{{ a }}{{ b }}`), no
`%` string formatting, names limited to the context (`input`, `steps`) and a few globals, and a
list of filters that cannot be made to allocate without bound. Attribute access reaches JSON data
(a dict's keys, so `output.items` is the key `items`, not the method) and an allow-list of string
and list methods; anything starting with `_` is refused. Operators that build values (`*`, `**`,
`+`, `range`, `join`, `replace`) are bounded, and a rendered string stops at MAX_RENDERED_CHARS.

A string that is exactly one `{{ expression }}` renders to the expression's native JSON value (a
number, object or list), anything else to text.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.filters import FILTERS
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from server.core.errors import Invalid, did_you_mean

# Names a template may use besides the globals: the execution's input and earlier steps' results.
CONTEXT_NAMES = ("input", "steps")
MAX_RENDERED_CHARS = 1 << 20  # one rendered string (a request body, a message), at most
MAX_BUILT_CHARS = 1 << 20  # a string made by `*`, `+`, join or replace
MAX_BUILT_ITEMS = 10_000  # a list made by `*`, `+` or range
MAX_INT_BITS = 4096  # an integer made by `*` or `**`
MAX_SOURCE_CHARS = 16_384  # one template's source

_FILTERS = (
    "abs", "capitalize", "count", "d", "default", "dictsort", "first", "float", "int", "items",
    "join", "last", "length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
    "replace", "reverse", "round", "select", "selectattr", "sort", "string", "sum", "title",
    "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount",
)  # fmt: skip
# Methods reachable as attributes: none of them returns more than it was given.
_STR_METHODS = (
    "lower upper strip lstrip rstrip split rsplit splitlines startswith endswith title capitalize find "
    "rfind count isdigit isalpha isalnum isspace islower isupper removeprefix removesuffix partition "
    "rpartition"
)
_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(_STR_METHODS.split()),
    list: frozenset(("index", "count")),
}
_TEXT_MARKERS = ("{{", "{%", "{#")


class TemplateProblem(Invalid):
    """A template that cannot be used or failed to render. The message says where (the caller's
    label, then the path inside the value rendered) and why; `path` is that path alone
    (`body.text`, `parameters.channel`), `field` the same."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message, field=path or None)
        self.path = path


def _check_size(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_BUILT_CHARS:
        raise SecurityError(f"a string longer than {MAX_BUILT_CHARS} characters")
    if isinstance(value, (list, tuple)) and len(value) > MAX_BUILT_ITEMS:  # pyright: ignore[reportUnknownArgumentType]
        raise SecurityError(f"a list longer than {MAX_BUILT_ITEMS} items")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"an integer larger than {MAX_INT_BITS} bits")
    return value


def _length(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple)) else 0  # pyright: ignore[reportUnknownArgumentType]


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError(f"an integer larger than {MAX_INT_BITS} bits")
        return left * right
    count = right if isinstance(right, int) else left if isinstance(left, int) else 1
    if count > 0 and _length(left) * count + _length(right) * count > max(MAX_BUILT_CHARS, MAX_BUILT_ITEMS):
        raise SecurityError("a repeated value too long")
    return _check_size(left * right)


def _power(left: Any, right: Any) -> Any:
    big = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
    if big and (right > MAX_INT_BITS or abs(left).bit_length() * right > MAX_INT_BITS):
        raise SecurityError(f"an integer larger than {MAX_INT_BITS} bits")
    try:
        return left**right
    except OverflowError as exc:
        raise SecurityError("a number too large") from exc


def _add(left: Any, right: Any) -> Any:
    if _length(left) + _length(right) > max(MAX_BUILT_CHARS, MAX_BUILT_ITEMS):
        raise SecurityError("a concatenation too long")
    return _check_size(left + right)


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        raise SecurityError("% string formatting is not available; write the text around {{ }} parts")
    return left % right


def _range(*args: int) -> list[int]:
    values = range(*args)
    if len(values) > MAX_BUILT_ITEMS:
        raise SecurityError(f"a range longer than {MAX_BUILT_ITEMS}")
    return list(values)


def _join(value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    if attribute is not None:
        items = [_ENV.getitem(item, attribute) for item in items]
    texts = [str(item) for item in items]
    if sum(map(len, texts)) + len(d) * max(len(texts) - 1, 0) > MAX_BUILT_CHARS:
        raise SecurityError(f"a joined string longer than {MAX_BUILT_CHARS} characters")
    return d.join(texts)


def _replace(value: str, old: str, new: str, count: int | None = None) -> str:
    text, old, new = str(value), str(old), str(new)
    found = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    if len(text) + found * max(len(new) - len(old), 0) > MAX_BUILT_CHARS:
        raise SecurityError(f"a replaced string longer than {MAX_BUILT_CHARS} characters")
    return text.replace(old, new, -1 if count is None else count)


def _sum(value: Iterable[Any], attribute: str | int | None = None, start: float = 0) -> float:
    total: float = start
    for item in value:
        item = _ENV.getitem(item, attribute) if attribute is not None else item
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            raise SecurityError("sum adds numbers only")
        total += item
    return total


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(("*", "**", "+", "%"))

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.globals.clear()
        self.globals.update(range=_range, dict=dict)
        self.filters = {name: FILTERS[name] for name in _FILTERS}
        self.filters.update(join=_join, replace=_replace, sum=_sum)
        self.binop_table = {**self.binop_table, "*": _multiply, "**": _power, "+": _add, "%": _modulo}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return self.binop_table[operator](left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if attribute.startswith("_"):
            raise SecurityError(f"access to {attribute!r} is not allowed")
        if isinstance(obj, Mapping):
            return obj[attribute] if attribute in obj else self.undefined(obj=obj, name=attribute)  # pyright: ignore[reportUnknownVariableType]
        for kind, methods in _METHODS.items():
            if isinstance(obj, kind) and attribute in methods:
                return getattr(obj, attribute)
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, str):
            return self.getattr(obj, argument)
        if isinstance(obj, (list, tuple, str)) and isinstance(argument, (int, slice)):
            try:
                return obj[argument]  # pyright: ignore[reportUnknownVariableType]
            except IndexError:
                pass
        return self.undefined(obj=obj, name=str(argument))


_ENV = _Sandbox()


# -- compiling ---------------------------------------------------------------------------------------
def _problem(message: str, where: str, path: str) -> TemplateProblem:
    said = ": ".join(part for part in (where, path, message) if part)
    return TemplateProblem(said, path=path)


@functools.lru_cache(maxsize=2048)
def _parse(source: str) -> tuple[nodes.Template, tuple[nodes.Expr, ...], bool]:
    """The checked syntax tree, its expressions, and whether it is exactly one `{{ expression }}`.
    Raises TemplateProblem (without a location; callers add theirs)."""
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateProblem(f"a template longer than {MAX_SOURCE_CHARS} characters")
    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error: {exc.message}") from None
    expressions: list[nodes.Expr] = []
    has_text = False
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            raise TemplateProblem(
                "only {{ expression }} parts are allowed in templates, not {% statements %}"
            )
        for part in node.nodes:
            if isinstance(part, nodes.TemplateData):
                has_text = has_text or bool(part.data)
            else:
                expressions.append(part)
    for expression in expressions:
        _check_expression(expression)
    return tree, tuple(expressions), len(expressions) == 1 and not has_text


def _check_expression(expression: nodes.Expr) -> None:
    known = (*CONTEXT_NAMES, *_ENV.globals)
    for node in (expression, *expression.find_all(nodes.Node)):
        if isinstance(node, nodes.Concat):
            raise TemplateProblem("~ is not available: write {{ a }}{{ b }} to join text")
        if isinstance(node, nodes.Name) and node.name not in known:
            hint = did_you_mean(node.name, known)
            raise TemplateProblem(
                f"unknown name {node.name!r}{hint}: templates see {', '.join(CONTEXT_NAMES)}"
            )
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise TemplateProblem(f"access to {node.attr!r} is not allowed")
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key: object = node.arg.value  # pyright: ignore[reportUnknownMemberType]
            if isinstance(key, str) and key.startswith("_"):
                raise TemplateProblem(f"access to {key!r} is not allowed")
        if isinstance(node, nodes.Filter) and node.name not in _ENV.filters:
            hint = did_you_mean(node.name, _ENV.filters)
            raise TemplateProblem(f"unknown filter {node.name!r}{hint}")
        if isinstance(node, nodes.Test) and node.name not in _ENV.tests:
            hint = did_you_mean(node.name, _ENV.tests)
            raise TemplateProblem(f"unknown test {node.name!r}{hint}")


@functools.lru_cache(maxsize=2048)
def _compiled(source: str) -> Template | TemplateExpression:
    tree, expressions, single = _parse(source)
    if single:
        body: list[nodes.Node] = [nodes.Assign(nodes.Name("result", "store"), expressions[0], lineno=1)]
        return TemplateExpression(_ENV.from_string(nodes.Template(body, lineno=1)), False)
    return _ENV.from_string(tree)


def _has_template(text: str) -> bool:
    return any(marker in text for marker in _TEXT_MARKERS)


# -- the public functions --------------------------------------------------------------------------------
def _join_path(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _walk_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield value, path
    elif isinstance(value, Mapping):
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            yield from _walk_strings(item, _join_path(path, key))  # pyright: ignore[reportUnknownArgumentType]
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
            yield from _walk_strings(item, f"{path}[{index}]")


def references(value: Any, where: str = "", path: str = "") -> set[str]:
    """The step names the templates inside `value` read (`steps.fetch...`, `steps['fetch']...`),
    found in the syntax tree. A template that cannot be used, or that reads `steps[...]` with a
    computed name, is a TemplateProblem saying `where` (a label such as "step 'notify' (2)") and
    the path inside `value` (after `path`)."""
    found: set[str] = set()
    for text, at in _walk_strings(value, path):
        if not _has_template(text):
            continue
        try:
            _tree, expressions, _single = _parse(text)
        except TemplateProblem as exc:
            raise _problem(exc.message, where, at) from None
        for expression in expressions:
            for node in (expression, *expression.find_all(nodes.Node)):
                if not isinstance(node, (nodes.Getattr, nodes.Getitem)):
                    continue
                base = node.node
                if not (isinstance(base, nodes.Name) and base.name == "steps"):
                    continue
                if isinstance(node, nodes.Getattr):
                    found.add(node.attr)
                elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):  # pyright: ignore[reportUnknownMemberType]
                    found.add(node.arg.value)  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
                else:
                    raise _problem(
                        "steps[...] must name a step, e.g. steps.fetch or steps['fetch']", where, at
                    )
    return found


def render(value: Any, context: Mapping[str, Any], where: str = "", path: str = "") -> Any:
    """`value` with every string in it rendered against `context` (`{"input": ..., "steps": {name:
    {"output": ...}}}`); a string that is exactly one `{{ expression }}` becomes its native JSON
    value. A failure is a TemplateProblem saying `where` (a label such as "step 'notify' (2)")
    and the path inside `value` (after `path`, e.g. "config")."""
    if isinstance(value, str):
        return _render_text(value, context, where, path)
    if isinstance(value, Mapping):
        return {
            key: render(item, context, where, _join_path(path, key))  # pyright: ignore[reportUnknownArgumentType]
            for key, item in value.items()  # pyright: ignore[reportUnknownVariableType]
        }
    if isinstance(value, (list, tuple)):
        return [render(item, context, where, f"{path}[{i}]") for i, item in enumerate(value)]  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    return value


def _render_text(text: str, context: Mapping[str, Any], where: str, path: str) -> Any:
    if not _has_template(text):
        return text
    try:
        compiled = _compiled(text)
        if isinstance(compiled, TemplateExpression):
            return _native(compiled(**context))
        return _bounded_text(compiled.generate(**context))
    except TemplateProblem as exc:
        raise _problem(exc.message, where, path) from None
    except UndefinedError as exc:
        raise _problem(f"undefined: {exc.message}", where, path) from None
    except SecurityError as exc:
        raise _problem(f"refused by the template sandbox: {exc}", where, path) from None
    except TemplateError as exc:
        raise _problem(f"template error: {exc.message}", where, path) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError) as exc:
        raise _problem(f"template error: {exc}", where, path) from None


def _bounded_text(chunks: Iterable[str]) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_RENDERED_CHARS:
            raise SecurityError(f"rendered text longer than {MAX_RENDERED_CHARS} characters")
        parts.append(chunk)
    return "".join(parts)


def _native(value: Any) -> Any:
    """A JSON value: mappings and sequences copied as dicts and lists; anything else refused."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # pyright: ignore[reportPrivateUsage]  # raises UndefinedError
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateProblem("the value is not a finite number")
        return value
    if isinstance(value, Mapping):
        return {str(k): _native(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    if isinstance(value, (list, tuple, range, Iterator)):
        items = list(value)  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
        _check_size(items)
        return [_native(v) for v in items]  # pyright: ignore[reportUnknownVariableType]
    raise TemplateProblem(f"the value is a {type(value).__name__}, not a JSON value")


def as_condition(expression: str, where: str = "", path: str = "") -> str:
    """A condition's expression (bare, `input.amount > 100`, or wrapped in `{{ }}`) as the template
    that renders its value; a TemplateProblem when it is not one usable expression."""
    stripped = expression.strip()
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        stripped = "{{ " + stripped + " }}"
    try:
        single = _parse(stripped)[2]
    except TemplateProblem as exc:
        raise _problem(exc.message, where, path) from None
    if not single:
        raise _problem("a condition is one expression, e.g. input.amount > 100", where, path)
    return stripped


def evaluate(expression: str, context: Mapping[str, Any], where: str = "", path: str = "") -> bool:
    """A condition's truth (see `as_condition` for what `expression` may be)."""
    return bool(render(as_condition(expression, where, path), context, where, path))


def filter_names() -> tuple[str, ...]:
    """The filters templates may use."""
    return tuple(sorted(_ENV.filters))
