"""`python -m argsfw.methods [--json] [pkg.module:NAME ...]`: every decoding method and stage,
what each needs and its settings.

Methods come from the decoding-method registry (`argsfw.decoding.registry`), each knob with its
default, range and doc from the method's own settings dataclass; stages from the stage registry
(`argsfw.stages`). A method or stage of one's own named by import path (``pkg.module:NAME``) is
listed too when given: ``python -m argsfw.methods my_pkg.m:METHOD``.
"""

from __future__ import annotations

import dataclasses
import json
import sys


def describe(extra: list[str] | None = None) -> dict:
    """``{"methods": [...], "stages": [...]}``: names, needs, knobs (default, range, doc), sections."""
    from argsfw.decoding.config import knobs_of
    from argsfw.decoding.registry import get_method, methods
    from argsfw.stages import find_stage, get_stage, stages

    found = {n: m for n, m in methods().items() if n == m.name}
    own_stages = dict(stages())
    spec: dict[str, str] = {}  # methods of one's own: the import path that names them
    for name in extra or []:
        if find_stage(name) is not None or ":" not in name:
            own_stages[name] = get_stage(name)
        else:
            method = get_method(name)
            found[method.name] = method
            spec[method.name] = name
    out_methods = []
    for name, m in found.items():
        knobs = [
            {"name": k.name, "default": k.default, "range": k.describe(), "doc": k.doc}
            for k in knobs_of(m.settings)
        ]
        out_methods.append(
            {
                "name": name,
                "use": f"decode.method={spec.get(name, name)}",
                "summary": m.summary,
                "needs": str(m.needs),
                "off_when_zero": m.guide_knob,
                "decodes": "per step (shared search loop)" if m.build else "whole sequences",
                "knobs": knobs,
            }
        )
    out_stages = []
    for name, s in own_stages.items():
        settings = {f.name: _default(f) for f in dataclasses.fields(s.config)} if s.config else {}
        out_stages.append(
            {
                "name": name,
                "entry": f"python -m argsfw.{s.entry}",
                "summary": s.summary,
                "makes": s.makes,
                "section": s.section,
                "settings": settings,
                "reads": list(s.sections),
            }
        )
    return {"methods": out_methods, "stages": out_stages}


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return value if isinstance(value, (list, dict, str, int, float, bool)) else repr(value)
    return None


def render(info: dict) -> str:
    """The listing as text."""
    lines = [
        "Decoding methods (decode.method=NAME or decode=NAME; pkg.module:METHOD for your own)",
        "",
    ]
    for m in info["methods"]:
        off = f", off at {m['off_when_zero']}=0" if m["off_when_zero"] else ""
        use = f"; {m['use']}" if ":" in m["use"] else ""
        lines.append(f"  {m['name']}  [needs: {m['needs']}{off}; {m['decodes']}{use}]")
        lines.append(f"      {m['summary']}")
        for k in m["knobs"]:
            doc = f"  {k['doc']}" if k["doc"] else ""
            rng = f" ({k['range']})" if k["range"] else ""
            lines.append(f"      decode.{k['name']}={json.dumps(k['default'])}{rng}{doc}")
    lines += ["", "Stages (stage: NAME in a recipe; pkg.module:STAGE for your own)", ""]
    for s in info["stages"]:
        lines.append(f"  {s['name']}  [{s['entry']}; makes {s['makes']}]")
        lines.append(f"      {s['summary']}")
        if s["settings"]:
            pairs = ", ".join(f"{k}={json.dumps(v)}" for k, v in s["settings"].items())
            lines.append(f"      {s['section']}: {pairs}")
        lines.append(f"      also reads: {', '.join(s['reads']) or '(none)'}")
    return "\n".join(lines)


USAGE = """usage: python -m argsfw.methods [--json] [pkg.module:NAME ...]

List every decoding method (its knobs: default, range, doc) and every stage (its settings).
  pkg.module:NAME  also list a method or stage of one's own, named by import path
  --json           print the listing as JSON
  -h, --help       show this message
Set a method's knob as decode.<knob>=VALUE (e.g. decode.weight=2), the same for your own."""


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for a name that cannot be listed or a bad option)."""
    from argsfw.decoding.types import DecodeInputError
    from argsfw.errors import ConfigError

    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(USAGE)
        return 0
    bad = [a for a in args if a.startswith("-") and a != "--json"]
    if bad:
        print(f"argsfw methods: error: unknown option {bad[0]}; see --help", file=sys.stderr)
        return 2
    as_json = "--json" in args
    names = [a for a in args if a != "--json"]
    try:
        info = describe(names)
    except (ConfigError, DecodeInputError) as exc:
        print(f"argsfw methods: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info, indent=2, default=str) if as_json else render(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
