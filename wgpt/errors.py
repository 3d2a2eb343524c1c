"""The one exception type users see: a message that says what is wrong and what to do."""


class WgptError(Exception):
    """An error caused by input or environment, reported as one line with no traceback."""
