"""The one exception type that means "the user gave bad input"."""


class UserError(Exception):
    """Bad input from the user: the message is one line naming the problem and the fix.

    The CLI prints it as ``error: <message>`` and exits with status 2; everything else is a bug
    and keeps its traceback.
    """
