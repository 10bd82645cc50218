#!/usr/bin/env python3
"""Render funnelstream's alert rules with your own thresholds.

Prometheus rule files have no parameters, so alert-rules.yml keeps each
tunable value as a literal followed by a marker comment on the same line:

    > 2000  # threshold: cac_max (default 2000)

This script rewrites the literal on every line that carries a marker of the
given name and records the new value in the marker:

    > 5000  # threshold: cac_max (default 2000; rendered 5000)

so a rendered file can itself be rendered again. Python 3 standard library
only.

    render-alerts.py --list
    render-alerts.py --set cac_max=5000 --set cac_for=2h --out alerts.yml
    render-alerts.py --in alerts.yml --check

Exit status: 0 on success, 2 on bad usage (unknown parameter, bad value, a
marker whose value is not on its line exactly once).
"""

import argparse
import math
import os
import re
import sys

MARKER = re.compile(
    r"#\s*threshold:\s*(?P<name>[a-z][a-z0-9_]*)\s*"
    r"\(default\s+(?P<default>[^;)\s]+)(?:;\s*rendered\s+(?P<rendered>[^)\s]+))?\)"
)
DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
DEFAULT_IN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "alert-rules.yml")


class RenderError(Exception):
    pass


def kind(name):
    """`duration` for *_for and *_window parameters, `number` otherwise."""
    return "duration" if name.endswith(("_for", "_window")) else "number"


def validate(name, value):
    if kind(name) == "duration":
        if not DURATION.match(value):
            raise RenderError(
                f"{name}: {value!r} is not a Prometheus duration (e.g. 30s, 15m, 1h, 7d)"
            )
    else:
        if not NUMBER.match(value) or not math.isfinite(float(value)):
            raise RenderError(f"{name}: {value!r} is not a finite number")
    return value


def token_re(value):
    # The value as a whole token: not part of a longer number, name or duration.
    return re.compile(r"(?<![\w.])" + re.escape(value) + r"(?!\w|\.\d)")


def is_comment(line):
    """Whole-line comments (like the example in the file's header) carry no value."""
    return line.lstrip().startswith("#")


def scan(lines):
    """Parameters found in the file: name -> {default, current, lines}."""
    params = {}
    for lineno, line in enumerate(lines, 1):
        if is_comment(line):
            continue
        found = list(MARKER.finditer(line))
        if len(found) > 1:
            raise RenderError(f"line {lineno}: more than one threshold marker")
        if "threshold:" in line and not found:
            raise RenderError(f"line {lineno}: malformed threshold marker: {line.strip()}")
        for m in found:
            name, default = m.group("name"), m.group("default")
            current = m.group("rendered") or default
            validate(name, default)
            p = params.setdefault(name, {"default": default, "current": current, "lines": []})
            if p["default"] != default or p["current"] != current:
                raise RenderError(
                    f"line {lineno}: {name} has default {default} / value {current} here "
                    f"but {p['default']} / {p['current']} on line {p['lines'][0]}"
                )
            code = line[: m.start()]
            hits = len(token_re(current).findall(code))
            if hits != 1:
                raise RenderError(
                    f"line {lineno}: the value {current} of {name} occurs {hits} times "
                    f"before its marker (must be exactly once): {line.rstrip()}"
                )
            p["lines"].append(lineno)
    return params


def render(text, settings):
    lines = text.splitlines(keepends=True)
    params = scan(lines)
    unknown = sorted(set(settings) - set(params))
    if unknown:
        raise RenderError(
            "unknown parameter(s): " + ", ".join(unknown)
            + "; known: " + ", ".join(sorted(params))
        )
    for name, value in settings.items():
        validate(name, value)
    out = []
    for line in lines:
        m = None if is_comment(line) else MARKER.search(line)
        if m and m.group("name") in settings:
            name, default = m.group("name"), m.group("default")
            current = m.group("rendered") or default
            new = settings[name]
            code = token_re(current).sub(lambda _: new, line[: m.start()], count=1)
            marker = f"# threshold: {name} (default {default}"
            marker += ")" if new == default else f"; rendered {new})"
            line = code + marker + line[m.end():]
        out.append(line)
    return "".join(out)


def parse_set(item):
    if "=" not in item:
        raise RenderError(f"--set {item!r}: expected name=value")
    name, value = item.split("=", 1)
    return name.strip(), value.strip()


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Rewrite the thresholds of funnelstream's alert rules.",
        epilog="Parameters ending in _for or _window take Prometheus durations "
        "(30s, 15m, 1h, 7d); the others take numbers. See README.md.",
    )
    ap.add_argument("--in", dest="src", default=DEFAULT_IN,
                    help="rule file to read (default: alert-rules.yml next to this script)")
    ap.add_argument("--out", help="file to write (default: standard output)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="set a parameter; repeatable")
    ap.add_argument("--list", action="store_true",
                    help="print the parameters with their defaults and current values")
    ap.add_argument("--check", action="store_true",
                    help="only check that every marker is well-formed")
    args = ap.parse_args(argv)
    try:
        with open(args.src, encoding="utf-8") as f:
            text = f.read()
        if args.list or args.check:
            params = scan(text.splitlines(keepends=True))
            if args.list:
                w = max(len(n) for n in params) if params else 4
                print(f"{'name':<{w}}  {'kind':<8}  {'default':<8}  current")
                for n in sorted(params):
                    p = params[n]
                    print(f"{n:<{w}}  {kind(n):<8}  {p['default']:<8}  {p['current']}")
            else:
                print(f"{args.src}: {len(params)} parameters, all markers well-formed")
            return 0
        settings = {}
        for item in args.set:
            name, value = parse_set(item)
            settings[name] = value
        result = render(text, settings)
    except RenderError as e:
        print(f"render-alerts: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"render-alerts: {e}", file=sys.stderr)
        return 2
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(result)
    else:
        sys.stdout.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
