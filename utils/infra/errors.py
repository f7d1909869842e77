"""The one exception type for problems a user can fix (missing files, bad config)."""


class VECError(Exception):
    """A problem with the user's setup or input.

    Entry scripts print its message as a single line and exit with status 2, so the
    message must say what is wrong and how to fix it, in one sentence.
    """


class VECWarning(UserWarning):
    """Something the user should know that does not stop the work (half precision running emulated, say).

    Entry scripts print it as one line, `warning: <message>`, and go on.
    """
