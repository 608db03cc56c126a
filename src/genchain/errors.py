"""Exceptions whose message is written for the person at the keyboard.

The CLI prints ``error: <message>`` for any :class:`GenchainError` and exits with status 2, without a
traceback (``--debug`` shows it). A message says what was wrong and what to do about it.
"""


class GenchainError(Exception):
    """Base class: bad input or state that the user can fix."""


class InputError(GenchainError):
    """A source file, dataset or argument that cannot be used as given."""


class ConfigError(GenchainError):
    """An unknown config key, a value of the wrong type, or an inconsistent combination."""


class RunDirError(GenchainError):
    """A run directory that is missing, holds another model, or would be overwritten."""


class CheckpointError(GenchainError):
    """A checkpoint that is corrupt, incomplete or does not fit the model."""


class TrainingError(GenchainError):
    """Training cannot go on (for example the loss diverged); the last checkpoint is intact."""


class ProvenanceError(GenchainError):
    """A signature, manifest, ledger or key that does not check out, or cannot be read."""
