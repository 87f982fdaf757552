"""``harness methods`` and ``harness algorithms``: what can be asked for, and from where."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.plugins import GROUPS, Registry
from harness.presets import SELECTION_DEFAULTS


def register(commands) -> None:
    for kind, command, text in (
        ("method", "methods", "selection methods (--methods)"),
        ("algorithm", "algorithms", "supernet algorithms (--algorithm)"),
    ):
        parser = commands.add_parser(
            command,
            help=f"list the available {text}: source, options, aliases, preset defaults",
            description=f"List every available {text.split(' (')[0]}, built-in or from an "
            f"installed plugin (entry point group {GROUPS[kind]}), with its options (types and "
            "defaults), its aliases and the preset defaults that apply; plugins that could "
            "not be loaded are listed with the reason.",
        )
        parser.set_defaults(handler=lambda args, kind=kind: show(kind))


def show(kind: str) -> int:
    print(describe(_registry(kind)))
    return 0


def describe(registry: Registry) -> str:
    lines = []
    for name, cls in registry.classes.items():
        lines.append(f"{name}  [{registry.sources[name]}]")
        doc = (cls.__doc__ or "").strip().splitlines()
        module_doc = (__import__(cls.__module__, fromlist=["_"]).__doc__ or "").strip()
        summary = doc[0] if doc else module_doc.splitlines()[0] if module_doc else ""
        if summary:
            lines.append(f"    {summary}")
        lines.append("    options: " + (_options(cls.options_class) or "none"))
        aliases = getattr(cls, "aliases", {})
        if aliases:
            lines.append("    aliases: " + "; ".join(
                f"{alias} = {_values(values)}" for alias, values in aliases.items()
            ))  # fmt: skip
        if registry.kind == "method":
            presets = [f"{p}: {_values(d[name])}" for p, d in SELECTION_DEFAULTS.items()
                       if d.get(name)]  # fmt: skip
            lines.append("    preset defaults: " + ("; ".join(presets) or "none"))
    if registry.kind == "method":
        from methods.selection import METHOD_GROUPS

        lines.append("groups: " + "; ".join(
            f"{group} = {','.join(members)}" for group, members in METHOD_GROUPS.items()
        ))  # fmt: skip
    if registry.problems:
        lines.append("not loaded:")
        lines += [f"    {problem}" for problem in registry.problems.values()]
    return "\n".join(lines)


def _options(options_class: type) -> str:
    parts = []
    for f in dataclasses.fields(options_class):
        default: Any = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        parts.append(f"{f.name}: {kind} = {default!r}")
    return ", ".join(parts)


def _values(values: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items())


def _registry(kind: str) -> Registry:
    if kind == "method":
        from methods.selection import method_registry

        return method_registry()
    from methods.supernet import algorithm_registry

    return algorithm_registry()
