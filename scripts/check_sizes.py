"""Module sizes: no module of the package over 400 lines (STYLE.md 11), migrations excepted.

`ALLOWED` lists the modules still over the limit with the most lines each may have: it may
only shrink. A listed module that grew, or that is back under the limit (take it off the
list), or that no longer exists, fails the check. Run by `./scripts/test`; exits 1 on a
failure, printing one line per problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

LIMIT = 400
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "wasync"
EXCEPT = ("wasync/store/migrations/",)
ALLOWED: dict[str, int] = {}


def sizes() -> dict[str, int]:
    """Lines per module of the package (paths relative to the project root)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(EXCEPT):
            out[rel] = len(path.read_text().splitlines())
    return out


def problems(found: dict[str, int], allowed: dict[str, int]) -> list[str]:
    """One line per module over the limit, and per allowlist entry that is out of date."""
    out = []
    for rel, lines in found.items():
        cap = allowed.get(rel, LIMIT)
        if lines > cap:
            where = "its allowlisted" if rel in allowed else "the"
            out.append(f"{rel}: {lines} lines, over {where} limit of {cap}: split it")
    for rel in allowed:
        if rel not in found:
            out.append(f"{rel}: allowlisted but gone: remove it from ALLOWED")
        elif found[rel] <= LIMIT:
            out.append(f"{rel}: {found[rel]} lines, under {LIMIT} now: remove it from ALLOWED")
    return out


def main() -> int:
    """Print the problems; 1 when there are any."""
    found = problems(sizes(), ALLOWED)
    for line in found:
        print(f"module size: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
