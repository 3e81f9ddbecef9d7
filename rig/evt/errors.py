"""The one error every event-file reader raises for a file it cannot read as asked."""

from __future__ import annotations


class EventFileError(ValueError):
    """A file that is not a readable event file of the format asked for (or of any format).

    The message names the file and the problem (and the byte offset where the data broke), so a
    command-line tool can print it as one line. A `ValueError`, so callers that caught the
    readers' earlier errors still catch it.
    """
