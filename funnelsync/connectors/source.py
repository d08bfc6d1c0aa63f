"""The interface every usage source implements.

A source yields one row a contact: a mapping of column name to value. The sync engine finds the
contact's email in the column named by `key` and does the rest (normalising, skipping, mapping);
a source does not know about HubSpot, the state or the journal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Row = Mapping[str, Any]


@dataclass
class SourceRows:
    """What one read of a source gives: the column names, known before the first row, and the rows.

    `skipped` counts records the source itself had to leave out (e.g. a Moesif user with no
    email), by reason; the engine adds them to the run's counts.
    """

    columns: tuple[str, ...]
    rows: Iterator[Row]
    skipped: dict[str, int] = field(default_factory=dict)


class Source(ABC):
    #: the column that holds the contact's email
    key: str

    @abstractmethod
    def read(self) -> SourceRows:
        """Start reading. Raises ConfigError for a query/setting the user must fix,
        CredentialsError for a refused token, FatalError for an unreachable source."""

    @abstractmethod
    def check(self) -> None:
        """A cheap call that proves the source is reachable and the credentials work (`validate`)."""

    def read_columns(self) -> tuple[str, ...]:
        """The columns a read returns, for `validate` to check the config against: by default
        from a read stopped before its rows. Raises as `read` does, but does not check `key`."""
        found = self.read()
        getattr(found.rows, "close", lambda: None)()
        return found.columns

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
