"""User-facing errors: one clear message that says what to do, never a traceback dump."""

from __future__ import annotations


class PsmlabError(Exception):
    """An error caused by the user's input or environment, with a hint on how to fix it.

    The CLI prints `str(error)` (and the hint) and exits with code 2; no traceback.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  -> {self.hint}"


class ConfigError(PsmlabError):
    """A config field is unknown, malformed or out of range."""


class RunDirError(PsmlabError):
    """A run directory is missing, corrupt, or belongs to a different config."""


class TrainingError(PsmlabError):
    """Training diverged (NaN/inf loss) or cannot proceed."""
