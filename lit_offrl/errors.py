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
