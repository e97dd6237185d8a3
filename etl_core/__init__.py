"""etl: a pluggable ETL framework for pushing large files into rate-limited APIs.

Plugins use only the names exported here.
"""

from ._commands import CommandLine
from ._errors import (
    BatchRejected,
    ConfigError,
    EtlError,
    FatalError,
    PermanentError,
    PluginError,
    RecordError,
    RecordRejected,
    RunLockedError,
    ThrottledError,
    TransientError,
)
from ._headers import parse_rate_limit, parse_retry_after
from ._outcome import Outcome
from ._regular_file import NotRegularFileError, open_regular_file
from ._version import __version__
from .base import (
    Batching,
    InputSample,
    Plugin,
    PluginOptions,
    RateLimitHint,
    Record,
    RunContext,
    SendResult,
    Sink,
    SinkField,
    Source,
    Transform,
)
from .hookspecs import hookimpl
from .logging import register_secret
from .report import CsvFile, spreadsheet_safe

__all__ = [
    "BatchRejected",
    "Batching",
    "CommandLine",
    "ConfigError",
    "CsvFile",
    "EtlError",
    "FatalError",
    "InputSample",
    "NotRegularFileError",
    "Outcome",
    "PermanentError",
    "Plugin",
    "PluginError",
    "PluginOptions",
    "RateLimitHint",
    "Record",
    "RecordError",
    "RecordRejected",
    "RunLockedError",
    "RunContext",
    "SendResult",
    "Sink",
    "SinkField",
    "Source",
    "ThrottledError",
    "Transform",
    "TransientError",
    "__version__",
    "hookimpl",
    "open_regular_file",
    "parse_rate_limit",
    "parse_retry_after",
    "register_secret",
    "spreadsheet_safe",
]
