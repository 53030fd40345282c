"""``spicecross golden check|update``: the golden-reference regression suite."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _selected(names: list[str] | None) -> list:
    from .. import golden

    all_cases = golden.cases()
    if not names:
        return all_cases
    known = {c.name: c for c in all_cases}
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"unknown golden case {bad[0]!r}; cases: {', '.join(known)}")
    return [known[n] for n in names]


def _cmd_golden(args: argparse.Namespace) -> int:
    from .. import golden

    selected = _selected(args.case)
    if args.action == "update":
        root = Path(args.root).resolve() if args.root else golden.writable_package_root()
        for case in selected:
            changes = golden.update_case(case, root)
            print(f"{case.name}: " + ("; ".join(changes) if changes else "unchanged"))
        return 0
    root = Path(args.root).resolve() if args.root else golden.package_root()
    golden.verify_manifest(root, [c.name for c in selected])
    failed = 0
    for case in selected:
        res = golden.check_case(case, root, run_spice=not args.no_spice)
        print(f"{case.name}: {'ok' if res.ok else 'FAILED'} ({case.description})")
        for m in res.messages:
            print(f"    {m}")
        failed += not res.ok
    if failed:
        print(f"{failed} golden case(s) failed; if the change is intended, run "
              "'spicecross golden update' and commit the files", file=sys.stderr)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("golden", help="check or regenerate the golden references",
                       description="Check the golden references (netlists, stored ngspice results, "
                                   "surrogate bounds) or regenerate them.")
    p.add_argument("action", choices=["check", "update"])
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p.add_argument("--no-spice", action="store_true", help="check: skip the fresh ngspice runs")
    p.add_argument("--root", metavar="DIR",
                   help="directory of golden files and their manifest.json (default: the package's "
                        "spicecross/data/golden; update needs it writable)")
    p.set_defaults(func=_cmd_golden)
