"""A small Dockerfile reader for tests: stages, their ENV, WORKDIR, CMD and HEALTHCHECK.

It covers the subset of the Dockerfile syntax this repository uses and raises ``ValueError`` on
anything it does not understand (heredocs, variable expansion in ENV or WORKDIR, shell-form
commands), so that a test never silently runs something other than what the image would.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Instruction:
    """One logical instruction: its upper-cased keyword, the raw arguments, its first line."""

    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    """One build stage: from ``FROM`` up to the next ``FROM``."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """Every instruction of this stage with the given keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword.upper()]

    @property
    def env(self) -> dict[str, str]:
        """The ENV values this stage sets, later ones overriding earlier ones."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values.update(parse_env(instruction.arguments))
        return values

    @property
    def workdir(self) -> str:
        """The working directory in effect at the end of the stage ("/" when never set)."""
        current = "/"
        for instruction in self.all("WORKDIR"):
            path = instruction.arguments.strip()
            if "$" in path:
                raise ValueError(f"line {instruction.line}: variables in WORKDIR are not supported")
            current = posixpath.normpath(posixpath.join(current, path))
        return current

    @property
    def cmd(self) -> list[str]:
        """The argv of the stage's last CMD, which must be in exec (JSON) form."""
        commands = self.all("CMD")
        if not commands:
            raise ValueError(f"stage {self.name or self.base!r} has no CMD")
        return exec_form(commands[-1].arguments, commands[-1].line)

    @property
    def healthcheck(self) -> tuple[dict[str, str], list[str]]:
        """The options and exec-form argv of the stage's last HEALTHCHECK."""
        checks = self.all("HEALTHCHECK")
        if not checks:
            raise ValueError(f"stage {self.name or self.base!r} has no HEALTHCHECK")
        arguments, line = checks[-1].arguments, checks[-1].line
        options: dict[str, str] = {}
        rest = arguments.strip()
        while rest.startswith("--"):
            option, _, rest = rest.partition(" ")
            key, _, value = option[2:].partition("=")
            options[key] = value
            rest = rest.strip()
        keyword, _, command = rest.partition(" ")
        if keyword.upper() != "CMD":
            raise ValueError(f"line {line}: HEALTHCHECK without CMD: {arguments!r}")
        return options, exec_form(command, line)


def exec_form(arguments: str, line: int) -> list[str]:
    """The argv of an exec-form (JSON array) CMD/ENTRYPOINT; shell form is an error."""
    text = arguments.strip()
    try:
        argv = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"line {line}: not exec form (a JSON array): {text!r}") from error
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ValueError(f"line {line}: exec form must be a non-empty array of strings: {text!r}")
    return argv


def parse_env(arguments: str) -> dict[str, str]:
    """The variables of one ENV instruction (``k=v k2="v 2"`` or the legacy ``k v``)."""
    if "$" in arguments:
        raise ValueError(f"variable expansion in ENV is not supported: {arguments!r}")
    tokens = shlex.split(arguments, posix=True)
    if not tokens:
        raise ValueError("ENV without arguments")
    if "=" not in tokens[0]:
        # Legacy form: the whole rest of the line is the value.
        key, _, value = arguments.strip().partition(" ")
        return {key: value.strip()}
    values = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ValueError(f"ENV token {token!r} is not key=value")
        values[key] = value
    return values


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with continuations joined and comment lines dropped, with line numbers."""
    joined: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        # Comment and empty lines are dropped even inside a continued instruction, as Docker does.
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        joined.append((start, " ".join(p for p in parts if p)))
        parts = []
    if parts:
        raise ValueError(f"line {start}: instruction continues past the end of the file")
    return joined


def _substitute(text: str, variables: dict[str, str], line: int) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare")
        if name not in variables:
            raise ValueError(f"line {line}: ${name} has no default value")
        return variables[name]

    return _VARIABLE.sub(replace, text)


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile, in order; ``FROM`` images resolved with global ARG defaults."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, instruction in _logical_lines(text):
        keyword, _, arguments = instruction.partition(" ")
        keyword = keyword.upper()
        if "<<" in arguments and keyword in {"RUN", "COPY", "ADD"}:
            raise ValueError(f"line {line}: heredocs are not supported")
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            base = _substitute(words[0], global_args, line)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"line {line}: only ARG may come before the first FROM")
            key, _, default = arguments.strip().partition("=")
            global_args[key] = default.strip("\"'")
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments.strip(), line))
    if not stages:
        raise ValueError("no FROM instruction")
    return stages


def read(path: Path) -> list[Stage]:
    """The stages of the Dockerfile at ``path``."""
    return parse(path.read_text(encoding="utf-8"))
