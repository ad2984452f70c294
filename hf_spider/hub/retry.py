"""Bounded retries with backoff around whole calls to the Hub.

huggingface_hub already retries a lot by itself: ``list_models`` pages go through ``http_backoff`` (timeouts,
dropped connections, 408/429/5xx, ``Retry-After`` honoured), and ``hf_hub_download`` retries its metadata
request and resumes an interrupted body with a ``Range`` request, then checks the size of what arrived. It
does not retry a single API call (``model_info``, ``create_commit``), a download answered 5xx, a metadata
request whose connection dropped, or a whole listing or download that failed after its own retries.
:func:`with_retries` covers those: a transient failure (:func:`is_transient`) is retried on the schedule
``http_backoff`` uses (1, 2, 4 s...), a 429's ``Retry-After`` is honoured, anything else is raised at once, and
when the attempts run out a :class:`~hf_spider.errors.HubUnavailableError` names the call and the last error.

A call that changes the Hub (a commit) may have gone through although its answer was lost; ``landed`` checks
that before the call is repeated, so a retried commit never lands twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..errors import HubUnavailableError

__all__ = ["ATTEMPTS", "DEFAULT_TIMEOUT", "configure_timeout", "ensure_timeout", "is_transient", "transport_errors",
           "with_retries"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

ATTEMPTS = 4
BASE_WAIT, MAX_WAIT = 1.0, 8.0  # seconds; huggingface_hub's http_backoff schedule
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is cut short: the retries stay bounded in time
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})  # huggingface_hub's default retry status codes
DEFAULT_TIMEOUT = 30.0  # seconds without an answer before a call to the Hub fails (then is retried)
_budget = {"seconds": 4 * DEFAULT_TIMEOUT}  # no new attempt starts after this; configure_timeout sets it
_configured = {"done": False}


def configure_timeout(seconds: float | None = None) -> float:
    """Give every call huggingface_hub makes a timeout: API calls (its HTTP client waits forever by default, and
    many calls pass ``timeout=None``) through a request hook on the client it builds (``set_client_factory``),
    and, when a timeout is given (``seconds`` or ``$HF_SPIDER_TIMEOUT``), downloads too (``HF_HUB_DOWNLOAD_TIMEOUT``,
    ``HF_HUB_ETAG_TIMEOUT``); without one, API calls get :data:`DEFAULT_TIMEOUT`. The CLI calls this for every
    command (``--timeout``). Retries of :func:`with_retries` then stop starting after four times that. Returns the
    timeout set.

    Library users need not call it: the first call hf_spider makes to the Hub does, with the default or
    ``$HF_SPIDER_TIMEOUT``, unless the process has set its own client factory on huggingface_hub."""
    import os

    from huggingface_hub import constants, set_client_factory

    from ..constants import positive_int_env

    explicit = seconds is not None or bool(os.environ.get("HF_SPIDER_TIMEOUT", "").strip())
    seconds = float(seconds or positive_int_env("HF_SPIDER_TIMEOUT", int(DEFAULT_TIMEOUT)))
    try:  # huggingface_hub's own client (its request hooks), plus ours
        from huggingface_hub.utils._http import default_client_factory
    except ImportError:  # a private name: without it, a plain client of the same library
        default_client_factory = lambda: _httpx().Client(follow_redirects=True)

    def bound(request) -> None:  # huggingface_hub passes timeout=None to many calls: that means "wait forever"
        limits = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {k: seconds if limits.get(k) is None else limits[k]
                                         for k in ("connect", "read", "write", "pool")}

    def client_factory():
        client = default_client_factory()
        client.event_hooks = {**client.event_hooks, "request": [*client.event_hooks.get("request", []), bound]}
        return client

    set_client_factory(client_factory)
    _configured["done"] = True
    _budget["seconds"] = 4 * seconds
    if explicit:  # else the download timeouts stay huggingface_hub's (10 s) or what HF_HUB_* say
        os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = os.environ["HF_HUB_ETAG_TIMEOUT"] = str(max(1, int(seconds)))
        constants.HF_HUB_DOWNLOAD_TIMEOUT = constants.HF_HUB_ETAG_TIMEOUT = max(1, int(seconds))
    return seconds


def ensure_timeout() -> None:
    """:func:`configure_timeout` once, unless something already chose huggingface_hub's client factory."""
    if _configured["done"]:
        return
    try:
        from huggingface_hub.utils import _http

        chosen = _http._GLOBAL_CLIENT_FACTORY is not _http.default_client_factory
    except (ImportError, AttributeError):  # private names: when they move, configure anyway
        chosen = False
    if not chosen:
        configure_timeout()
    _configured["done"] = True


def _httpx():
    """huggingface_hub's HTTP library."""
    try:
        from huggingface_hub.utils import httpx  # httpx2 under huggingface_hub 2, httpx under 1.30+
    except ImportError:  # huggingface_hub 1.0 - 1.29 use httpx
        import httpx
    return httpx


def transport_errors() -> tuple[type[BaseException], ...]:
    """Timeouts, network errors and dropped or cut connections of huggingface_hub's HTTP library."""
    httpx = _httpx()
    return httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors it was raised from (libraries wrap network errors in their own)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(error: BaseException) -> bool:
    """Whether retrying may help: a timeout, a dropped connection, or a 408/429/5xx answer, here or in the cause.

    A definitive answer (401, 403, 404, 412...), offline mode, an invalid file or a bug are not transient.
    """
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    transport = transport_errors()
    for e in _chain(error):
        if isinstance(e, OfflineModeIsEnabled):
            return False
        if isinstance(e, HfHubHTTPError) and e.response is not None:
            return e.response.status_code in RETRY_STATUS
        if isinstance(e, (*transport, ConnectionError, TimeoutError)):
            return True
    return False


def _wait(error: BaseException, attempt: int) -> float:
    """Seconds before the next attempt: the answer's ``Retry-After`` if any, else exponential backoff."""
    from huggingface_hub.errors import HfHubHTTPError

    for e in _chain(error):
        if isinstance(e, HfHubHTTPError) and e.response is not None:
            value = e.response.headers.get("Retry-After", "").strip()
            if value.isdigit():
                return min(float(value), MAX_RETRY_AFTER)
    return min(MAX_WAIT, BASE_WAIT * 2 ** (attempt - 1))


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def with_retries(
    call: Callable[[], T], *, what: str, attempts: int = ATTEMPTS, landed: Callable[[], T | None] | None = None,
) -> T:
    """``call()``, retried on transient failures up to ``attempts`` times in all, none starting later than 4 times
    the Hub timeout after the first (:func:`configure_timeout`).

    Args:
        call: the whole operation (a listing, a download, an API call).
        what: names the operation in the error, e.g. ``"download"`` -> "download failed after 4 attempts: ...".
        landed: for a call that changes the Hub: returns the result of an earlier attempt that went through
            although its answer was lost (or ``None``). Asked after a transient failure, and after any failure
            of a repeated attempt (a lost first attempt makes a repeat conflict); its result is returned as is.

    Raises:
        HubUnavailableError: every attempt failed transiently.
        The call's own error when it is not transient.
    """
    ensure_timeout()
    attempt, start = 0, time.monotonic()
    while True:
        attempt += 1
        try:
            return call()
        except Exception as error:
            transient = is_transient(error)
            if landed is not None and (transient or attempt > 1):
                result = with_retries(landed, what=f"checking whether {what} went through", attempts=attempts)
                if result is not None:
                    logger.info("%s went through although its answer was lost (%s)", what, _describe(error))
                    return result
            if not transient:
                raise
            wait = _wait(error, attempt)
            if attempt >= attempts or time.monotonic() - start + wait > _budget["seconds"]:
                raise HubUnavailableError(f"{what} failed after {attempt} attempt{'s' * (attempt > 1)}: "
                                          f"{_describe(error)}") from error
            logger.info("%s failed (%s); retrying in %.0f s [%d/%d]", what, _describe(error), wait, attempt, attempts)
            time.sleep(wait)
