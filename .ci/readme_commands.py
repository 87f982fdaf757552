"""Print the README's commands that CI runs, one a line: the code block after each
``<!-- ci: KIND ... -->`` marker (KIND is ``set-up`` or ``test``).

CI reads them from the README instead of repeating them, so the two cannot drift apart:
what a new user is told to type is exactly what CI runs. Exits 1 with one sentence when a
marker or its block is missing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = re.compile(r"<!--\s*ci:\s*([a-z-]+)\b.*?-->")


def commands(readme: str, kind: str) -> list[str]:
    """The lines of the fenced block that follows every ``ci: KIND`` marker."""
    found: list[str] = []
    lines = readme.splitlines()
    for number, line in enumerate(lines):
        match = MARKER.search(line)
        if not match or match.group(1) != kind:
            continue
        rest = lines[number + 1 :]
        if not rest or not rest[0].startswith("```"):
            raise ValueError(f"README line {number + 1}: a ci: {kind} marker must sit right "
                             "above a fenced code block")  # fmt: skip
        block = []
        for code in rest[1:]:
            if code.startswith("```"):
                break
            block.append(code)
        else:
            raise ValueError(f"README line {number + 2}: the ci: {kind} block is not closed")
        found += [c for c in block if c.strip() and not c.lstrip().startswith("#")]
    if not found:
        raise ValueError(f"the README has no ci: {kind} block with a command in it")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("set-up", "test"):
        print("usage: readme_commands.py set-up|test", file=sys.stderr)
        return 2
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    try:
        print("\n".join(commands(readme, argv[1])))
    except ValueError as error:
        print(f"readme_commands: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
