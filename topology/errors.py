"""The one exception type weft raises for bad input or a failed operation, with a user-facing message."""


class WeftError(Exception):
    """A failure to report to the user as one clear line; nothing was changed."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class NotFound(WeftError):
    def __init__(self, message: str):
        super().__init__(message, status=404)


class Conflict(WeftError):
    def __init__(self, message: str):
        super().__init__(message, status=409)
