"""Which database errors are "retry later" (503) and which are "this data" (422)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from triggers.api.problems import unreachable


class _AdapterError(Exception):
    """What SQLAlchemy's asyncpg adapter raises: the driver's error is its cause."""


def _wrapped(driver_error: Exception) -> DBAPIError:
    adapter = _AdapterError(str(driver_error))
    adapter.__cause__ = driver_error
    return DBAPIError("INSERT ...", {}, adapter)


@pytest.mark.parametrize(
    "driver_error",
    [
        asyncpg.exceptions.AdminShutdownError("terminating connection"),  # 57P01: Postgres stops
        asyncpg.exceptions.CrashShutdownError("crash"),  # 57P02
        asyncpg.exceptions.CannotConnectNowError("starting up"),  # 57P03
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),  # 08003
        asyncpg.exceptions.TooManyConnectionsError("full"),  # 53300
        asyncpg.exceptions.DeadlockDetectedError("deadlock"),  # 40P01
        ConnectionResetError("reset"),
    ],
)
def test_a_database_that_is_not_there_is_retry_later(driver_error: Exception) -> None:
    assert unreachable(_wrapped(driver_error))


@pytest.mark.parametrize(
    "driver_error",
    [
        asyncpg.exceptions.StringDataRightTruncationError("too long"),  # 22001
        asyncpg.exceptions.UntranslatableCharacterError("\\u0000"),  # 22P05
        asyncpg.exceptions.NumericValueOutOfRangeError("out of range"),  # 22003
    ],
)
def test_data_the_database_cannot_store_is_the_callers(driver_error: Exception) -> None:
    assert not unreachable(_wrapped(driver_error))
