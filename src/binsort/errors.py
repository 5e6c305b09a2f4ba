"""The one exception type for errors a user can cause and fix.

Library code raises ``BinsortError`` with a message that says what went wrong and what to do;
the CLI prints that message on one line and exits non-zero, never with a traceback.
"""


class BinsortError(Exception):
    """A problem with the user's input (paths, data, options, checkpoints)."""


def check_choice(option: str, value: object, choices: tuple[str, ...], where: str = "") -> None:
    """The one message for a value outside an option's choices, e.g. ``--tta``'s."""
    if value not in choices:
        raise BinsortError(f"{option} must be one of {', '.join(choices)}{where}, got {value!r}")
