"""``spicecross golden check|update``: the golden-reference regression suite."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import golden


def _selected(names: list[str] | None) -> list[golden.GoldenCase]:
    all_cases = golden.cases()
    if not names:
        return all_cases
    known = {c.name: c for c in all_cases}
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown golden case {bad[0]!r}; cases: {', '.join(known)}")
    return [known[n] for n in names]


def _cmd_golden(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve() if args.root else golden.REPO_ROOT
    if not (root / "netlists").is_dir() and args.action == "check":
        raise FileNotFoundError(f"no golden files under {root} (netlists/golden, tests/golden); "
                                "run from a spicecross checkout or pass --root")
    failed = 0
    for case in _selected(args.case):
        if args.action == "update":
            changes = golden.update_case(case, root)
            print(f"{case.name}: " + ("; ".join(changes) if changes else "unchanged"))
            continue
        res = golden.check_case(case, root, run_spice=not args.no_spice)
        print(f"{case.name}: {'ok' if res.ok else 'FAILED'} ({case.description})")
        for m in res.messages:
            print(f"    {m}")
        failed += not res.ok
    if failed:
        print(f"{failed} golden case(s) failed; if the change is intended, run "
              "'spicecross golden update' and commit the files", file=sys.stderr)
    return min(failed, 100)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("golden", help="check or regenerate the golden references",
                       description=golden.__doc__.splitlines()[0])
    p.add_argument("action", choices=["check", "update"])
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p.add_argument("--no-spice", action="store_true", help="check: skip the fresh ngspice runs")
    p.add_argument("--root", help="repository root holding netlists/golden and tests/golden")
    p.set_defaults(func=_cmd_golden)
