"""Errors that users see.

`UserError` is raised at the boundary (CLI, data module) for input the user can fix; the CLI prints its
message without a traceback and exits with status 2.
"""


class UserError(ValueError):
    """Bad input from the user: the message says what was wrong, what was expected and what to do."""


class DatasetError(UserError):
    """A dataset id that cannot be loaded or data that cannot be trained on."""


class NonFiniteLossError(RuntimeError):
    """A loss or metric became NaN or infinite during training; the run stops, the last good checkpoint stays."""


def one_line(exc: BaseException | str, limit: int = 200, empty: str = "") -> str:
    """An exception's message (or any text) as one line of at most `limit` characters, for a one-line error;
    `empty` stands in for an exception without a message."""
    text = " ".join(str(exc).split()) or empty
    return text if len(text) <= limit else text[:limit - 3] + "..."
