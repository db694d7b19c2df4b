"""The one exception users see: a single line saying what is wrong, where, and what to do."""


class UserError(Exception):
    """Bad input (config, data, model folder). The CLI prints it as one line and exits 2."""


class Stopped(KeyboardInterrupt):
    """A study or run ended by SIGTERM/SIGINT. The message is one line saying how to resume; the CLI exits with
    `code` (128 + the signal's number, as a shell reports a process ended by that signal)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
