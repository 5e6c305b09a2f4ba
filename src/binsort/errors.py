"""The one exception type for errors a user can cause and fix.

Library code raises ``BinsortError`` with a message that says what went wrong and what to do;
the CLI prints that message on one line and exits non-zero, never with a traceback.
"""


class BinsortError(Exception):
    """A problem with the user's input (paths, data, options, checkpoints)."""
