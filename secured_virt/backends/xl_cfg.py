"""Read and edit Xen xl domain configuration files (xl.cfg(5)) without losing what we don't own.

The grammar is libxlutil's: ``key = value`` settings ended by a newline or ``;``; a value is a
number, a "double-quoted" (backslash escapes) or 'single-quoted' string, or a [list, ...]
(lists may nest and span lines); ``#`` starts a comment; ``key += value`` appends.  We keep the
original text and the span of every setting, so changing one key rewrites only that span:
comments, ordering and settings we do not understand survive every edit.

Values we write are rendered back in the same syntax; strings that cannot be represented
(newline, NUL, or both quote characters) are refused rather than escaped in ways xl might read
differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Value = int | str | list  # list of Value

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r]+)
  | (?P<comment>\#[^\n]*)
  | (?P<nl>\n)
  | (?P<pluseq>\+=)
  | (?P<punct>[=\[\],;])
  | (?P<dq>"(?:[^"\\\n]|\\.)*")
  | (?P<sq>'[^'\n]*')
  | (?P<number>0[xX][0-9a-fA-F]+|[0-9]+)(?![A-Za-z_])
  | (?P<id>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}

MAX_CONFIG_BYTES = 1024 * 1024


class XlConfigError(ValueError):
    """A syntax error in an xl config, with the line it is on."""

    def __init__(self, message: str, line: int, source: str = "<config>") -> None:
        self.line = line
        self.source = source
        super().__init__(f"{source}:{line}: {message}")


@dataclass(frozen=True, slots=True)
class Setting:
    key: str
    value: Value
    start: int  # offset of the key
    end: int  # offset just after the value
    line: int
    append: bool = False  # written with +=


def _dequote(tok: str) -> str:
    if tok[0] == "'":
        return tok[1:-1]
    body, out, i = tok[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _tokens(text: str, source: str):
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise XlConfigError(f"unexpected character {text[pos]!r}", line, source)
        kind = m.lastgroup
        if kind not in ("ws", "comment"):
            yield kind, m.group(), m.start(), m.end(), line
        if kind == "nl":
            line += 1
        pos = m.end()
    yield "eof", "", len(text), len(text), line


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.toks = list(_tokens(text, source))
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def take(self):
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, msg: str):
        raise XlConfigError(msg, self.peek()[4], self.source)

    def skip_newlines(self) -> None:
        while self.peek()[0] == "nl":
            self.i += 1

    def atom_or_list(self) -> tuple[Value, int]:
        kind, text, _s, end, _line = self.peek()
        if kind == "number":
            self.i += 1
            return int(text, 0), end
        if kind in ("dq", "sq"):
            self.i += 1
            return _dequote(text), end
        if kind == "punct" and text == "[":
            self.i += 1
            items: list = []
            self.skip_newlines()
            while not (self.peek()[0] == "punct" and self.peek()[1] == "]"):
                value, _ = self.atom_or_list()
                items.append(value)
                self.skip_newlines()
                if self.peek()[0] == "punct" and self.peek()[1] == ",":
                    self.i += 1
                    self.skip_newlines()
                elif not (self.peek()[0] == "punct" and self.peek()[1] == "]"):
                    self.error("expected ',' or ']' in list")
            end = self.take()[3]
            return items, end
        self.error("expected a number, a quoted string or a [list]")
        raise AssertionError  # unreachable

    def settings(self) -> list[Setting]:
        out = []
        while True:
            kind, text, start, _end, line = self.peek()
            if kind == "eof":
                return out
            if kind == "nl" or (kind == "punct" and text == ";"):
                self.i += 1
                continue
            if kind != "id":
                self.error("expected a setting name")
            self.i += 1
            op = self.take()
            if not (op[0] == "pluseq" or (op[0] == "punct" and op[1] == "=")):
                raise XlConfigError(f"expected '=' after {text}", op[4], self.source)
            value, end = self.atom_or_list()
            nxt = self.peek()
            if not (nxt[0] in ("nl", "eof") or (nxt[0] == "punct" and nxt[1] == ";")):
                self.error(f"unexpected text after the value of {text}")
            out.append(Setting(text, value, start, end, line, op[0] == "pluseq"))


def parse(text: str, source: str = "<config>") -> list[Setting]:
    """Every setting in text, in order (raises XlConfigError with the line)."""
    return _Parser(text, source).settings()


def render(value: Value) -> str:
    """A value in xl.cfg syntax."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if "\n" in value or "\x00" in value or "\r" in value:
            raise ValueError(f"cannot write {value!r} into an xl config: it has a line break")
        if '"' not in value and "\\" not in value:
            return f'"{value}"'
        if "'" not in value:
            return f"'{value}'"
        raise ValueError(f"cannot write {value!r} into an xl config: it has both quote kinds")
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    raise TypeError(f"cannot write a {type(value).__name__} into an xl config")


class XlConfig:
    """An xl config file's text with its parsed settings; edits keep everything else intact."""

    def __init__(self, text: str, source: str = "<config>") -> None:
        if len(text.encode()) > MAX_CONFIG_BYTES:
            raise XlConfigError("config is larger than 1 MiB", 1, source)
        self.source = source
        self.text = text
        self.settings = parse(text, source)

    def get(self, key: str, default: Value | None = None) -> Value | None:
        """The effective value (the last plain setting, with later ``+=`` appended)."""
        value: Value | None = default
        for s in self.settings:
            if s.key != key:
                continue
            if s.append and isinstance(value, list):
                value = [*value, *(s.value if isinstance(s.value, list) else [s.value])]
            elif s.append and isinstance(value, str) and isinstance(s.value, str):
                value = value + s.value
            else:
                value = s.value
        return value

    def __contains__(self, key: str) -> bool:
        return any(s.key == key for s in self.settings)

    def set(self, key: str, value: Value) -> None:
        """Make ``key = value`` the only setting of key (in place of the last one, if any)."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"invalid xl config key {key!r}")
        rendered = f"{key} = {render(value)}"
        same = [s for s in self.settings if s.key == key]
        text = self.text
        if same:
            last = same[-1]
            text = text[: last.start] + rendered + text[last.end :]
            for s in reversed(same[:-1]):
                text = _cut_statement(text, s)
        else:
            if text and not text.endswith("\n"):
                text += "\n"
            text += rendered + "\n"
        self._reparse(text)

    def remove(self, key: str) -> bool:
        """Delete every setting of key; True if there was one."""
        same = [s for s in self.settings if s.key == key]
        text = self.text
        for s in reversed(same):
            text = _cut_statement(text, s)
        if same:
            self._reparse(text)
        return bool(same)

    def _reparse(self, text: str) -> None:
        self.settings = parse(text, self.source)
        self.text = text


def _cut_statement(text: str, s: Setting) -> str:
    """Remove one setting and its terminator (the whole line if it stood alone)."""
    start, end = s.start, s.end
    line_start = text.rfind("\n", 0, start) + 1
    rest = text[end:]
    stripped = rest.lstrip(" \t")
    if stripped.startswith(";"):
        end += len(rest) - len(stripped) + 1
        rest = text[end:]
        stripped = rest.lstrip(" \t")
    if text[line_start:start].strip() == "" and (stripped.startswith("\n") or stripped == ""):
        end += len(rest) - len(stripped) + (1 if stripped.startswith("\n") else 0)
        start = line_start
    return text[:start] + text[end:]
