"""The database the offline runtime loads from, named by a SQLAlchemy-style URL.

Kept apart from the runtime so that commands which only read the state folder can check
``--source`` without importing boto3, moto or the engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from deltaload.local.errors import LocalRuntimeError


def _check_server_url(url: str) -> None:
    """Refuse a database URL SQLAlchemy cannot read (a port that is not a number, say)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    # Never echo a password: user:secret@host becomes user:***@host.
    shown = re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
    try:
        port = make_url(url).port
    except (ArgumentError, ValueError) as error:
        raise LocalRuntimeError(
            f"cannot read the source URL {shown!r}: {error}; write it as "
            "postgresql://user@host:port/db or mysql+pymysql://user@host:port/db, "
            "with the port a number from 1 to 65535"
        ) from None
    if port is not None and not 1 <= port <= 65535:
        raise LocalRuntimeError(
            f"the source URL {shown!r} has port {port}; a port is a number from 1 to 65535"
        )


@dataclass(frozen=True)
class Source:
    """The database the local runtime loads from."""

    engine: str  # sqlite | postgres | mysql
    url: str  # a SQLAlchemy URL (sqlite:///path for SQLite)
    schema: str = "dwh"  # the schema name a SQLite file answers to

    @classmethod
    def from_url(cls, url: str, schema: str = "dwh") -> Source:
        """Infer the engine from a SQLAlchemy-style URL."""
        scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
        engine = {
            "sqlite": "sqlite",
            "postgresql": "postgres",
            "postgres": "postgres",
            "mysql": "mysql",
            "mariadb": "mysql",
        }.get(scheme)
        if engine is None:
            raise LocalRuntimeError(
                f"unsupported source URL scheme {scheme!r}: use sqlite:///path, "
                "postgresql://user@host:port/db or mysql+pymysql://user@host:port/db"
            )
        if engine != "sqlite":
            _check_server_url(url)
        return cls(engine=engine, url=url, schema=schema)

    @property
    def sqlite_path(self) -> str:
        """The database file of a SQLite source."""
        return self.url.split("///", 1)[1] if "///" in self.url else self.url

    def secret(self) -> dict[str, Any]:
        """The source secret in the shape DMS reads (plus the local-only url)."""
        from sqlalchemy.engine import make_url

        if self.engine == "sqlite":
            return {"engine": "sqlite", "url": self.url}
        parsed = make_url(self.url)
        return {
            "engine": self.engine,
            "host": parsed.host or "127.0.0.1",
            "port": parsed.port or (5432 if self.engine == "postgres" else 3306),
            "username": parsed.username or "",
            "password": parsed.password or "",
            "dbname": parsed.database or "",
            "url": self.url,
        }
