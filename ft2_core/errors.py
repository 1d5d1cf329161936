"""One exception type for bad user input, so every entry point can show a single clear sentence."""


class InputError(ValueError):
    """A user-supplied file, tensor or option is unusable; the message names it and what was expected."""


class WriteError(OSError):
    """An output could not be written whole (a full disk, a killed encoder); the message names the file. Nothing is
    left under its name."""
