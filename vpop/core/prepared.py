"""Statements for the hottest paths, compiled once per database dialect and run on the
driver's cursor: what SQLAlchemy's execution machinery costs per statement (tens of
microseconds) is most of such a path's time.

A :class:`Prepared` holds a SQLAlchemy Core statement; :meth:`Prepared.run` compiles it the
first time for the connection's dialect (SQL text, parameter order, and the bind processors
of the columns' types, so a timestamp or JSON value is stored exactly as the ORM stores it)
and then only formats parameters and calls ``cursor.execute``. Use it inside a
:func:`raw_transaction`; everything else goes through sessions as usual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, bindparam, insert
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable
from sqlalchemy.types import TypeEngine

from vpop.core.db import gate_now, write_gate

_Compiled = tuple[str, list[str] | None, dict[str, Callable[..., Any]], dict[str, Any]]


class Prepared:
    """One statement, compiled per dialect on first use."""

    def __init__(self, statement: Executable, types: Mapping[str, TypeEngine[Any]]) -> None:
        """``types``: each bound parameter's type (its value is converted by that type's bind
        processor for the dialect, as SQLAlchemy would)."""
        self.statement = statement
        self.types = dict(types)
        self._compiled: dict[str, _Compiled] = {}
        self._readers: dict[str, list[Callable[[Any], Any] | None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def inserting(
        cls, model: Any, columns: Sequence[str], returning: Any | None = None
    ) -> Prepared:
        """``INSERT INTO <model's table> (columns) VALUES (:column, ...)``, each value bound
        with its column's type (and ``RETURNING returning`` when given)."""
        statement = insert(model).values({name: bindparam(name) for name in columns})
        if returning is not None:
            statement = statement.returning(returning)
        return cls(statement, {name: model.__table__.c[name].type for name in columns})

    def _compile(self, dialect: Dialect) -> _Compiled:
        with self._lock:
            found = self._compiled.get(dialect.name)
            if found is None:
                compiled = self.statement.compile(dialect=dialect)  # type: ignore[attr-defined]
                order = list(compiled.positiontup) if compiled.positional else None
                processors: dict[str, Callable[..., Any]] = {}
                for name, type_ in self.types.items():
                    processor = type_.dialect_impl(dialect).bind_processor(dialect)
                    if processor is not None:
                        processors[name] = processor
                # binds the statement made itself (a LIMIT's value) keep their values
                defaults = {k: v for k, v in compiled.params.items() if k not in self.types}
                found = (compiled.string, order, processors, defaults)
                self._compiled[dialect.name] = found
            return found

    def run(self, cursor: Any, dialect: Dialect, params: Mapping[str, Any]) -> Any:
        """Execute with ``params`` on the driver's ``cursor``; return the cursor."""
        sql, order, processors, defaults = self._compile(dialect)
        cursor.execute(sql, _bind(params, order, processors, defaults))
        return cursor

    def rows(
        self, cursor: Any, dialect: Dialect, params: Mapping[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Execute a SELECT with ``params``; its rows, each value converted by its column
        type's result processor (a timestamp or JSON value comes back as the ORM gives it)."""
        readers = self._readers.get(dialect.name)
        if readers is None:
            columns = self.statement.selected_columns  # type: ignore[attr-defined]
            readers = [
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
            ]
            self._readers[dialect.name] = readers
        found = self.run(cursor, dialect, params).fetchall()
        return [
            tuple(
                value if read is None else read(value)
                for read, value in zip(readers, row, strict=True)
            )
            for row in found
        ]

    def run_many(self, cursor: Any, dialect: Dialect, rows: Sequence[Mapping[str, Any]]) -> Any:
        """Execute once per parameter set of ``rows`` (the driver's ``executemany``)."""
        sql, order, processors, defaults = self._compile(dialect)
        cursor.executemany(sql, [_bind(params, order, processors, defaults) for params in rows])
        return cursor


def _bind(
    params: Mapping[str, Any],
    order: list[str] | None,
    processors: dict[str, Callable[..., Any]],
    defaults: dict[str, Any],
) -> Any:
    """The driver's parameters: converted by the types' processors, in the statement's order."""
    values = dict(defaults)
    for name, value in params.items():
        values[name] = processors[name](value) if name in processors else value
    return [values[name] for name in order] if order is not None else values


@contextmanager
def raw_transaction(engine: Engine) -> Iterator[tuple[Any, Dialect]]:
    """A pooled driver connection's cursor for one transaction: committed at the end of the
    block (if the block did not commit it), rolled back on error; yields ``(cursor, dialect)``."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            yield cursor, engine.dialect
            if _in_transaction(connection):
                connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()
    finally:
        connection.close()  # back to the pool


@contextmanager
def session_cursor(session: Session, *, writes: bool) -> Iterator[tuple[Any, Dialect]]:
    """A driver cursor in ``session``'s transaction, for plain statements among its ORM work;
    yields ``(cursor, dialect)`` and closes the cursor after the block. What the session holds
    is flushed first; with ``writes``, a ``write_scope``'s write gate is taken too. The caller
    expires what its writes changed under the session."""
    session.flush()
    connection = session.connection()
    if writes:
        gate_now(connection)
    cursor = connection.connection.cursor()
    try:
        yield cursor, connection.dialect
    finally:
        cursor.close()


@contextmanager
def gated_commit(engine: Engine, cursor: Any) -> Iterator[None]:
    """The block's writes on ``cursor`` under the database's write gate
    (:func:`~vpop.core.db.write_gate`), committed (or rolled back on error) before the gate is
    let go. Take the cursor's connection first (:func:`raw_transaction`), then this."""
    with write_gate(engine):
        try:
            yield
            cursor.connection.commit()
        except BaseException:
            cursor.connection.rollback()
            raise


def _in_transaction(connection: Any) -> bool:
    """Whether the driver connection has a transaction open (True when it cannot say)."""
    driver = getattr(connection, "driver_connection", connection)
    status = getattr(driver, "in_transaction", None)  # sqlite3
    if isinstance(status, bool):
        return status
    return True
