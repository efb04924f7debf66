"""Errors about the user's input (data, params, models, index), each with a message that says what to do.

Entry points (stages, CLI) catch `UserError` and print the message instead of a traceback."""


class UserError(Exception):
    """Base of the errors whose message tells the user what to do."""


class ParamsError(UserError, ValueError):
    """params.yaml (or an overrides file) does not fit the schema."""


class DataError(UserError, ValueError):
    """Bad input data."""


class ModelError(UserError, RuntimeError):
    """A model or adapter that cannot be used."""


class RetrievalIndexError(UserError, ValueError):
    """An embedding index that is missing, empty, or built from other data; names the stage to rerun."""
