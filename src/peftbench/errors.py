"""The one exception users see: a single line saying what is wrong, where, and what to do."""


class UserError(Exception):
    """Bad input (config, data, model folder). The CLI prints it as one line and exits 2."""
