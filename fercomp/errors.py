"""Errors a user can act on.

Every mistake a user can make (a bad file, a bad flag, a missing run) raises a subclass of
FercompError whose message names the file, row or flag and what to do. The CLI prints the
message on one line and exits with status 2; anything else is a bug and keeps its traceback.
"""


class FercompError(Exception):
    """Base class of user-facing errors (CLI exit status 2)."""

    exit_code = 2


class DataError(FercompError):
    """A data source is missing, unreadable, malformed or empty."""


class ConfigError(FercompError):
    """A flag or config value is out of range or inconsistent."""


class ModelError(FercompError):
    """An unknown model name, or weights that cannot be loaded."""


class RunError(FercompError):
    """A run folder is missing, incomplete, or of the wrong stage."""


def require_at_least(*checks: tuple[str, float, float]) -> None:
    """(flag, value, least) triples: the first value below its least is a ConfigError naming the flag."""
    for flag, value, least in checks:
        if value < least:
            raise ConfigError(f"{flag} must be >= {least} (got {value})")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so every stage stops as on Ctrl-C (and marks its run interrupted)."""


def interrupted_exit_code(exc: BaseException) -> int:
    """The shell's convention: 128 + the signal number (SIGINT 2 -> 130, SIGTERM 15 -> 143)."""
    return 143 if isinstance(exc, Terminated) else 130


def terminate_as_interrupt() -> None:
    """Turn SIGTERM into a Terminated exception (main thread only; elsewhere Python allows no handler)."""
    import signal
    import threading

    def _raise(signum, frame):
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise)
