"""Error classification of the ClickHouse sink: one decision per exception type or server code."""

from __future__ import annotations

import socket

import pytest
from clickhouse_driver import errors as che

from connectors.base import DataError, RetriableError
from connectors.clickhouse.errors import classify


def server_error(code: int) -> che.ServerException:
    return che.ServerException("DB::Exception: something. Stack trace:\n0. frames", code=code)


@pytest.mark.parametrize("code", [252, 241, 159, 209, 210, 236, 60, 81, 999999])
def test_server_overload_shutdown_unknown_are_retriable(code: int) -> None:
    outcome = classify(server_error(code))
    assert isinstance(outcome, RetriableError) and "Stack trace" not in str(outcome)


@pytest.mark.parametrize("code", [6, 27, 41, 53, 70, 321, 349])
def test_parse_and_type_errors_are_data_errors(code: int) -> None:
    assert isinstance(classify(server_error(code)), DataError)


@pytest.mark.parametrize("exc", [che.NetworkError("refused"), che.SocketTimeoutError("t"), ConnectionResetError(),
                                 socket.timeout(), EOFError(), TimeoutError()])
def test_network_failures_are_retriable(exc: BaseException) -> None:
    assert isinstance(classify(exc), RetriableError)


@pytest.mark.parametrize("exc", [che.TypeMismatchError("ubyte format requires 0 <= number <= 255"),
                                 AttributeError("'int' object has no attribute 'encode'"), OverflowError()])
def test_client_side_serialisation_failures_are_data_errors(exc: BaseException) -> None:
    assert isinstance(classify(exc), DataError)
