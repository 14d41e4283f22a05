"""Bulk statements run on the DBAPI cursor.

For hundreds of thousands of rows, SQLAlchemy's per-row work (``Row`` objects on the way out,
parameter processing on the way in) costs as much as the database itself. These helpers still
let SQLAlchemy build and compile the statement, and still pass every parameter through its
column type's bind processor; they only skip the per-row machinery in between. They run on
the connection's own DBAPI connection, so inside its transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

FETCH_ROWS = 250_000
"""Rows fetched at a time: bounds memory to one chunk of Python tuples."""


def fetch_plain(
    connection: Connection, statement: ClauseElement, *, size: int = FETCH_ROWS
) -> Iterator[list[tuple[Any, ...]]]:
    """Run ``statement`` and yield its rows as plain tuples, ``size`` at a time."""
    # IN lists are expanded into one parameter each ("ids_1_1", "ids_1_2"… of "ids_1").
    compiled = cast(
        SQLCompiler,
        statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True}),
    )
    processors = _processors(connection, compiled)
    params = {
        name: _converted(processors.get(name) or processors.get(name.rsplit("_", 1)[0]), value)
        for name, value in compiled.construct_params().items()
    }
    positions = compiled.positiontup
    arguments: Any = params if positions is None else tuple(params[n] for n in positions)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(compiled), arguments)
        while chunk := cursor.fetchmany(size):
            yield list(chunk)
    finally:
        cursor.close()


def execute_plain_many(
    connection: Connection, statement: ClauseElement, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run ``statement`` (an INSERT, possibly with ON CONFLICT) once per row of ``rows``,
    whose keys name the columns to set."""
    if not rows:
        return
    names = list(rows[0])
    compiled = cast(SQLCompiler, statement.compile(dialect=connection.dialect, column_keys=names))
    processors = _processors(connection, compiled)
    converters = [(name, processors.get(name)) for name in names]
    positions = compiled.positiontup
    arguments: list[Any]
    if positions is None:
        arguments = [
            {name: convert(row[name]) if convert else row[name] for name, convert in converters}
            for row in rows
        ]
    else:
        index = {name: i for i, name in enumerate(names)}
        order = [index[name] for name in positions]
        arguments = []
        for row in rows:
            values = [convert(row[name]) if convert else row[name] for name, convert in converters]
            arguments.append(tuple(values[i] for i in order))
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(str(compiled), arguments)
    finally:
        cursor.close()


def _converted(processor: Callable[[Any], Any] | None, value: Any) -> Any:
    return processor(value) if processor else value


def _processors(
    connection: Connection, compiled: SQLCompiler
) -> dict[str, Callable[[Any], Any] | None]:
    dialect = connection.dialect
    return {
        name: bind.type.dialect_impl(dialect).bind_processor(dialect)
        for name, bind in compiled.binds.items()
    }
