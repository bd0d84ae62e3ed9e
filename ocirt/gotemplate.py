"""The part of Go's text/template that `podman ps/inspect --format` scripts use.

    {{.Field.Sub}}      a field (of a JSON-like dict), `.` for the value itself
    {{json .X}}         JSON; also join X "sep", index X "key", upper, lower, len
    {{.X | json}}       a pipe: the value goes last to the function
    {{range .List}}...{{end}}   the body for each item, `.` that item
    {{if .X}}...{{else}}...{{end}}
    {{- ...}} / {{... -}}       trim the white space before / after
    table ...           (a prefix) a header row, then columns aligned on tabs

`\\t` and `\\n` in the format stand for a tab and a newline, as podman
reads them. Anything else is a TemplateError naming the part it could not
take, before anything is printed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import InvalidArgument


class TemplateError(InvalidArgument):
    """A --format template ocirt cannot take (or a field its data lacks)."""


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+)|(?P<pipe>\|)|(?P<word>[^\s|"]+))')

Node = Union[str, "Action", "Block"]


@dataclass
class Action:
    """{{pipeline}}: commands joined by |, each [function or value, args...]."""

    commands: List[List[str]]
    source: str


@dataclass
class Block:
    """{{range X}} or {{if X}}: `body`, and for if the `otherwise` part."""

    kind: str
    test: Action
    body: List[Node] = field(default_factory=list)
    otherwise: List[Node] = field(default_factory=list)


@dataclass
class Template:
    """A parsed format; render(value) for one value, table(values) for rows."""

    nodes: List[Node]
    is_table: bool
    headers: List[str]

    def render(self, value: Any) -> str:
        return _render(self.nodes, value)

    def table(self, values: Sequence[Any]) -> str:
        """One line per value (with a header row for a `table` format), columns aligned on tabs."""
        lines = [self.render(v) for v in values]
        if not self.is_table:
            return "".join(line + "\n" for line in lines)
        return align(["\t".join(self.headers)] + lines)


FUNCTIONS: Dict[str, Callable[..., Any]] = {
    "json": lambda v: json.dumps(v, separators=(",", ":")),  # as Go marshals: no spaces
    "join": lambda v, sep: sep.join(_text(x) for x in (v or [])),
    "index": lambda v, key: _index(v, key),
    "upper": lambda v: _text(v).upper(),
    "lower": lambda v: _text(v).lower(),
    "len": lambda v: len(v) if v is not None else 0,
}


def parse(fmt: str, header_names: Optional[Mapping[str, str]] = None) -> Template:
    """`fmt` as a Template; TemplateError naming what it cannot take.

    `header_names` maps a field (as written after the dot, e.g. "ID") to
    its column header for `table` formats; others are the field upper-cased.
    """
    text = fmt.replace("\\t", "\t").replace("\\n", "\n")
    is_table = text.startswith("table")
    if is_table:
        text = text[len("table") :].lstrip(" ")
    root: List[Node] = []
    stack: List[Tuple[List[Node], Optional[Block]]] = [(root, None)]
    at = 0
    for found in _ACTION.finditer(text):
        literal = text[at : found.start()]
        if found.group(1):
            literal = literal.rstrip()
        if literal:
            stack[-1][0].append(literal)
        at = found.end()
        if found.group(3):
            rest = text[at:]
            at += len(rest) - len(rest.lstrip())
        inner = found.group(2).strip()
        words = inner.split(None, 1)
        keyword = words[0] if words else ""
        if keyword in ("range", "if"):
            block = Block(keyword, _action(words[1] if len(words) > 1 else "", found.group(0)))
            stack[-1][0].append(block)
            stack.append((block.body, block))
        elif keyword == "else" and inner == "else":
            block_now = stack[-1][1]
            if block_now is None or block_now.kind != "if" or stack[-1][0] is block_now.otherwise:
                raise TemplateError(f"template: {found.group(0)} outside an {{{{if}}}}")
            stack[-1] = (block_now.otherwise, block_now)
        elif keyword == "end" and inner == "end":
            if len(stack) == 1:
                raise TemplateError(f"template: {found.group(0)} with nothing to end")
            stack.pop()
        else:
            stack[-1][0].append(_action(inner, found.group(0)))
    if "{{" in text[at:] or "}}" in text[at:]:
        raise TemplateError(f"template: unclosed or stray braces in {text[at:]!r}")
    if text[at:]:
        root.append(text[at:])
    if len(stack) > 1:
        raise TemplateError(f"template: {{{{{stack[-1][1].kind if stack[-1][1] else ''}}}}} without {{{{end}}}}")
    headers = [(header_names or {}).get(name, _header(name)) for name in _fields(root)] if is_table else []
    return Template(root, is_table, headers)


def align(lines: Sequence[str], min_width: int = 12, padding: int = 2) -> str:
    """Tab-separated cells as columns, each `padding` wider than its widest
    cell and at least `min_width` (podman's tabwriter settings)."""
    rows = [line.split("\t") for line in lines]
    widths: Dict[int, int] = {}
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths.get(i, min_width), len(cell) + padding)
    return "".join("".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])) + row[-1] + "\n" for row in rows)


def _action(source: str, whole: str) -> Action:
    commands: List[List[str]] = [[]]
    pos = 0
    while pos < len(source):
        token = _TOKEN.match(source, pos)
        if token is None or token.end() == pos:
            if source[pos:].strip() == "":
                break
            raise TemplateError(f"template: cannot read {source[pos:]!r} in {whole}")
        pos = token.end()
        if token.group("pipe"):
            commands.append([])
        else:
            commands[-1].append(token.group(token.lastgroup or "word"))
    for command in commands:
        if not command:
            raise TemplateError(f"template: an empty command in {whole}")
        head = command[0]
        if not head.startswith(".") and head not in FUNCTIONS:
            raise TemplateError(f"template: {head!r} in {whole} is not supported (fields, json, join, index, upper, lower, len, range, if)")
    return Action(commands, whole)


def _render(nodes: Sequence[Node], dot: Any) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, Action):
            out.append(_text(_evaluate(node, dot)))
        elif node.kind == "range":
            for item in _items(_evaluate(node.test, dot), node.test.source):
                out.append(_render(node.body, item))
        else:
            out.append(_render(node.body if _truthy(_evaluate(node.test, dot)) else node.otherwise, dot))
    return "".join(out)


def _evaluate(action: Action, dot: Any) -> Any:
    value: Any = None
    for n, command in enumerate(action.commands):
        args = [_argument(a, dot, action.source) for a in command[1:]]
        if n > 0:
            args.append(value)
        head = command[0]
        if head.startswith("."):
            if args:
                raise TemplateError(f"template: {head} takes no arguments in {action.source}")
            value = _field(dot, head, action.source)
            continue
        try:
            value = FUNCTIONS[head](*args)
        except TypeError as e:
            raise TemplateError(f"template: {head} in {action.source}: {e}") from e
    return value


def _argument(word: str, dot: Any, source: str) -> Any:
    if word.startswith('"'):
        return json.loads(word)
    if re.fullmatch(r"-?\d+", word):
        return int(word)
    if word.startswith("."):
        return _field(dot, word, source)
    raise TemplateError(f"template: {word!r} in {source} is neither a field nor a value")


def _field(value: Any, path: str, source: str) -> Any:
    for name in filter(None, path.split(".")):
        if not isinstance(value, Mapping) or name not in value:
            raise TemplateError(f"template: no field {name!r} for {path} in {source}")
        value = value[name]
    return value


def _index(value: Any, key: Any) -> Any:
    try:
        return value[key]
    except (KeyError, IndexError, TypeError):
        return None


def _items(value: Any, source: str) -> List[Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value[k] for k in sorted(value)]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TemplateError(f"template: cannot range over {type(value).__name__} in {source}")


def _truthy(value: Any) -> bool:
    return bool(value)


def _text(value: Any) -> str:
    """A value as Go's fmt prints it ({{.X}})."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _fields(nodes: Sequence[Node]) -> List[str]:
    """The field each column of a table prints: the first field of each tab-separated cell."""
    text = "".join(n if isinstance(n, str) else "\x00" + _first_field(n) + "\x00" for n in nodes)
    names = []
    for cell in text.split("\t"):
        found = re.search(r"\x00([^\x00]*)\x00", cell)
        names.append(found.group(1) if found else cell.strip())
    return names


def _first_field(node: Node) -> str:
    action = node.test if isinstance(node, Block) else node
    assert isinstance(action, Action)
    for command in action.commands:
        for word in command:
            if word.startswith(".") and len(word) > 1:
                return word.split(".")[-1]
    return ""


def _header(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).upper()
