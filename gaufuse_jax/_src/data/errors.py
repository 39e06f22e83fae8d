"""Errors of the data loaders: every one names the file, what was expected and what was
found."""


class DataError(ValueError):
  """A data file is missing, unreadable or inconsistent."""


class MissingFileError(DataError, FileNotFoundError):
  """A required data file does not exist."""
