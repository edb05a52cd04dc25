"""Which database errors are an outage (503 with Retry-After, the job retried) and which are
not (a bug or a conflict: 500, or the error it is)."""

from __future__ import annotations

import procrastinate.exceptions
import psycopg
import psycopg.errors
import psycopg_pool
import pytest
import sqlalchemy.exc

from slices_blueprint.core.errors import database_problem, database_unavailable


def wrapped(error: BaseException, *, invalidated: bool = False) -> sqlalchemy.exc.DBAPIError:
    return sqlalchemy.exc.DBAPIError.instance("SELECT 1", {}, error, psycopg.Error,
                                              connection_invalidated=invalidated)


def chained(error: BaseException) -> procrastinate.exceptions.ConnectorException:
    try:
        try:
            raise error
        except BaseException as exc:
            raise procrastinate.exceptions.ConnectorException() from exc
    except procrastinate.exceptions.ConnectorException as outer:
        return outer


@pytest.mark.parametrize("error", [
    psycopg.OperationalError("connection refused"),  # no SQLSTATE: the client could not reach it
    psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
    psycopg.errors.CannotConnectNow("the database system is starting up"),
    psycopg.errors.ConnectionFailure("connection failure"),
    psycopg.errors.DeadlockDetected("deadlock detected"),  # aborted for another's sake: retry
    psycopg.errors.SerializationFailure("could not serialize access"),
    psycopg_pool.PoolTimeout("couldn't get a connection after 30.00 sec"),
    sqlalchemy.exc.TimeoutError("QueuePool limit reached"),
    wrapped(psycopg.OperationalError("server closed the connection unexpectedly")),
    wrapped(psycopg.errors.QueryCanceled("any"), invalidated=True),
    chained(psycopg.OperationalError("connection refused")),
])
def test_outages_are_unavailable_and_answered_503_with_retry_after(error: BaseException) -> None:
    assert database_unavailable(error)
    response = database_problem(error)
    assert response is not None and response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize("error", [
    psycopg.errors.QueryCanceled("canceling statement due to statement timeout"),
    psycopg.errors.UniqueViolation("duplicate key"),
    wrapped(psycopg.errors.UndefinedTable("no such table")),
    chained(psycopg.errors.UniqueViolation("duplicate key")),
    ValueError("not a database error"),
])
def test_other_errors_are_not_outages(error: BaseException) -> None:
    assert not database_unavailable(error)
    assert database_problem(error) is None
