"""The one place where ClickHouse failures are classified.

Every exception the sink's ClickHouse calls raise goes through
:func:`classify` exactly once and comes out as :class:`RetriableError` (the
server or the network: back off, retry the same batch) or :class:`DataError`
(these rows: dead-letter them).  Codes are ClickHouse's ``ErrorCodes.cpp``.
"""

from __future__ import annotations

import socket
import struct

from connectors.base import DataError, RetriableError

#: The server refuses the rows themselves: retrying cannot help.
DATA_CODES = {
    6,    # CANNOT_PARSE_TEXT
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,   # ATTEMPT_TO_READ_AFTER_EOF (a malformed block)
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
}

#: Server busy, shutting down or not ready: wait and retry.  Unknown codes are
#: treated as retriable too (nothing is dropped; the sink logs and waits), except
#: DATA_CODES.  Listed for the reader and the tests.
RETRIABLE_CODES = {
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    236,  # ABORTED (server shutting down)
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    60,   # UNKNOWN_TABLE: migrations not applied yet
    81,   # UNKNOWN_DATABASE: idem
    16,   # NO_SUCH_COLUMN_IN_TABLE: a newer sink against an older schema
    319,  # UNKNOWN_STATUS_OF_INSERT
}


def classify(exc: BaseException) -> RetriableError | DataError:
    """Map any exception of a ClickHouse call to the sink's two outcomes."""
    if isinstance(exc, (RetriableError, DataError)):
        return exc
    from clickhouse_driver import errors as che

    if isinstance(exc, che.ServerException):
        code = int(getattr(exc, "code", 0) or 0)
        message = str(exc).split("Stack trace", 1)[0].strip()
        if code in DATA_CODES:
            return DataError(f"ClickHouse refused the rows (code {code}): {message}")
        return RetriableError(f"ClickHouse error {code}: {message}")
    if isinstance(exc, (che.NetworkError, che.SocketTimeoutError, che.UnexpectedPacketFromServerError,
                        ConnectionError, socket.timeout, TimeoutError, EOFError, OSError)):
        return RetriableError(f"ClickHouse unreachable: {type(exc).__name__}: {exc}")
    if isinstance(exc, (che.TypeMismatchError, struct.error, OverflowError, TypeError, ValueError,
                        AttributeError, UnicodeError)):
        # clickhouse-driver serialises client-side: a value of the wrong type fails here.
        return DataError(f"row does not fit the column types: {type(exc).__name__}: {exc}")
    return RetriableError(f"unexpected {type(exc).__name__}: {exc}")
