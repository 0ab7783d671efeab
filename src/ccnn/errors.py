"""One exception family for everything a user can get wrong or run into.

The CLI turns any ``CCNNError`` into a one-line message and exit code 1, so every message
here names the problem in words a user can act on, without a traceback.
"""

from __future__ import annotations


class CCNNError(Exception):
    """Base class of every error ccnn raises on purpose."""


class FormatError(CCNNError):
    """A ``.ccnn`` file is empty, truncated, corrupted, foreign or of an unknown version."""


class LimitError(FormatError):
    """A header claims a value outside what this decoder accepts (refused before allocating)."""


class ImageError(CCNNError):
    """An input is not an image, or uses a pixel mode ccnn does not code."""


class OutputExistsError(CCNNError):
    """An output file exists and overwriting was not asked for."""


class ConfigError(CCNNError):
    """A codec setting is out of range or does not apply to the chosen preset."""


class ConfigFileError(ConfigError):
    """A settings file (``--config``) cannot be read or holds a bad setting: bad input, exit 1.

    A ConfigError still, so that the API's callers catch one class for every bad setting; the
    command line tells it apart because the fix is in the file, not in the command.
    """
