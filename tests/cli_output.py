"""What a refused command printed: exactly one sentence on stderr, no traceback."""

from __future__ import annotations


def one_sentence(capsys) -> str:
    """The one error line (warnings aside) of the captured stderr; fails otherwise."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, err
    return lines[0]
