"""The one exception type for mistakes a user can make.

The CLI turns a :class:`HarnessError` into a single sentence on stderr and a
non-zero exit code; anything else is a bug and keeps its traceback.
"""


class HarnessError(Exception):
    """A problem the user can fix (bad argument, missing file, corrupt checkpoint)."""
