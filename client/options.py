"""A request's scalar settings as one table: the keyword, the request field, the shell flag.

A row names the setting once; the request builder, the Python signature shown by
`help()`, and the `monge` commands' flags are all read from it, so a new setting is a
new row (and, on the typed `Client` method, a new keyword). An unset setting (None) is
left out of the request: the server's default applies, stated once, in the solver's
config.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting. `kind` is float, int or bool, or str with `choices` (the names the
    client takes -> the schema's enum numbers). `flag`: the shell's name when it is not
    the keyword's with dashes."""

    name: str
    kind: type
    help: str
    choices: Mapping[str, int] | None = None
    flag: str | None = None
    metavar: str | None = None

    @property
    def flag_name(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def wire_value(self, value):
        """The value as the request field holds it; ValueError or TypeError for a bad one."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{self.name} must be one of {sorted(self.choices)}, got {value!r}")
            return self.choices[value]
        if self.kind is bool:
            return bool(value)
        if self.kind is int:
            try:
                return operator.index(value)
            except TypeError:
                raise TypeError(f"{self.name} must be an integer, got {value!r}") from None
        return float(value)

    def add_flag(self, parser, help_prefix: str = "", choices: bool = True, help: str | None = None) -> None:
        text = help_prefix + (self.help if help is None else help)
        if self.kind is bool:
            parser.add_argument(self.flag_name, dest=self.name, action="store_const", const=True, default=None,
                                help=text)
            return
        parser.add_argument(self.flag_name, dest=self.name, default=None, help=text, metavar=self.metavar,
                            type=str if self.choices is not None else self.kind,
                            choices=sorted(self.choices) if self.choices is not None and choices else None)


def set_options(request, options: tuple[Option, ...], values: Mapping[str, Any], caller: str) -> None:
    """Set each given (not None) value on `request`; an unknown name is a TypeError, as a
    misspelt keyword is."""
    table = {option.name: option for option in options}
    for name, value in values.items():
        if name not in table:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
        if value is not None:
            setattr(request, name, table[name].wire_value(value))


def given(values: Mapping[str, Any], options: tuple[Option, ...]) -> dict:
    """The settings among `values` (a namespace's or a call's), None ones included."""
    return {option.name: values.get(option.name) for option in options}


def from_args(args, options: tuple[Option, ...]) -> dict:
    """The settings given on the command line (flags left out are not in it)."""
    return {option.name: getattr(args, option.name) for option in options
            if getattr(args, option.name, None) is not None}


def with_keywords(function, options: tuple[Option, ...]):
    """`function(..., **settings)` shown with one keyword per option (default None), so
    that help() and completion list them."""
    signature = inspect.signature(function)
    fixed = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    keywords = [inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                  annotation=f"{option.kind.__name__} | None") for option in options]
    function.__signature__ = signature.replace(parameters=fixed + keywords)
    return function
