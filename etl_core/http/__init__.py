"""Building blocks for sinks that talk to HTTP APIs.

A sink plugin that sends records over HTTP gets from here what every such sink
needs and is easy to get wrong: one request within a deadline and a byte budget
(:func:`exchange`), safe URLs built from untrusted record values
(:func:`render_path`), a pool of reusable connections (:class:`ClientPool`), and
credentials chosen in config (:data:`AuthOptions`, :func:`make_authenticator`)
shared by all workers, with HTTP 401 handled once for all (:func:`send_authorized`).
"""

from ._auth import Authenticator, make_authenticator, send_authorized
from ._auth_options import ApiKeyAuth, AuthOptions, BearerAuth, ClientCredentialsAuth, CxoneAccessKeyAuth, PasswordAuth
from ._claims import token_claims
from ._clients import ClientPool
from ._connection_options import DISCOVER, CaBundle, ConnectTimeout, MaxConnections, check_base_url, connection_limit
from ._credential import Credential
from ._cxone_discovery import CxoneEndpoint, discover_cxone_api
from ._exchange import ACCEPT_ENCODING, Answer, Limits, exchange
from ._sink_support import SinkConnections, check_ca_bundle, find_api_host, retry_open
from ._tokens import TokenProvider
from ._urls import (
    KeyFormat,
    PathTemplate,
    check_http_url,
    check_secure,
    display_url,
    is_loopback,
    render_path,
    segment_value,
    template_fields,
)

__all__ = [
    "ACCEPT_ENCODING",
    "DISCOVER",
    "Answer",
    "ApiKeyAuth",
    "AuthOptions",
    "Authenticator",
    "BearerAuth",
    "CaBundle",
    "ClientCredentialsAuth",
    "ClientPool",
    "ConnectTimeout",
    "Credential",
    "CxoneAccessKeyAuth",
    "CxoneEndpoint",
    "KeyFormat",
    "Limits",
    "MaxConnections",
    "PasswordAuth",
    "PathTemplate",
    "SinkConnections",
    "TokenProvider",
    "check_base_url",
    "check_ca_bundle",
    "check_http_url",
    "check_secure",
    "connection_limit",
    "discover_cxone_api",
    "display_url",
    "exchange",
    "find_api_host",
    "is_loopback",
    "make_authenticator",
    "render_path",
    "retry_open",
    "segment_value",
    "send_authorized",
    "template_fields",
    "token_claims",
]
