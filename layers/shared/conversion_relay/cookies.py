"""Browser identifiers from a forwarded Cookie header: GA4 client and session id, fbp/fbc, afUserId.

A merchant's backend (or the first-party /events API) hands us the browser's raw `Cookie` header value;
this module picks the identifiers the destinations need out of it. Cookies are written by third-party
scripts, browser extensions and old code, so everything here is tolerant: a cookie that is present but
malformed is left out and named in `CookieIdentifiers.unparseable` (the caller counts it as a metric),
and nothing here ever raises on input or puts a cookie value in a message.

Formats (reference notes §7; Meta's capi-param-builder for the fbp/fbc appendix):

- `_ga`            GA1.<n>.<random>.<timestamp>           -> client_id "<random>.<timestamp>"
- `_ga_<stream>`   GS1.1.<session_id>.<session_number>... -> session_id
                   GS2.1.s<session_id>$o<n>$g<n>$t<ts>...  -> session_id
- `_fbp`           fb.<subdomain_index>.<creation_ms>.<random>[.<appendix>]
- `_fbc`           fb.<subdomain_index>.<creation_ms>.<fbclid>[.<appendix>]
- `fbclid` in the landing URL -> fbc "fb.1.<now_ms>.<fbclid>" (Meta's documented format)
- `afUserId`       the AppsFlyer Web SDK's UUID, sent as is (real cookies carry a "-p" suffix)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, unquote, urlsplit

from aws_lambda_powertools.metrics import MetricUnit

from conversion_relay.model import Context
from conversion_relay.observability import metrics

__all__ = [
    "CookieIdentifiers",
    "apply_cookies",
    "fill_from_cookies",
    "identifiers_from_cookies",
    "parse_cookie_header",
    "record_unparseable",
    "unparseable_metric",
]

GA_COOKIE = "_ga"
GA_SESSION_PREFIX = "_ga_"
GA_SESSION_LABEL = "_ga_*"  # one label for every stream: cookie names are visitor-controlled text
FBP_COOKIE = "_fbp"
FBC_COOKIE = "_fbc"
AF_USER_ID_COOKIE = "afUserId"
FBCLID_PARAM = "fbclid"

# Stable metric names per label, so a visitor-chosen cookie name can never become a metric name.
_METRIC_SUFFIX = {
    GA_COOKIE: "ga",
    GA_SESSION_LABEL: "ga_session",
    FBP_COOKIE: "fbp",
    FBC_COOKIE: "fbc",
    AF_USER_ID_COOKIE: "afUserId",
    FBCLID_PARAM: "fbclid",
}

# [0-9] and not \d: \d also matches other scripts' digits (fullwidth, Devanagari...), which no
# destination accepts.
_GA = re.compile(r"GA1\.[0-9]+(?:-[0-9]+)?\.([0-9]{1,20}\.[0-9]{1,20})")
_GS1 = re.compile(r"GS1\.[0-9]+\.([0-9]{1,20})\.[0-9]+(?:\..*)?", re.DOTALL)
_GS2 = re.compile(r"GS2\.[0-9]+\.s([0-9]{1,20})(?:\$.*)?", re.DOTALL)
# fbclid is base64url text; a dot would shift Meta's own split of the fbc value.
_CLICK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
_META_ID = re.compile(r"fb\.[0-9]{1,2}\.[0-9]{1,16}\.([A-Za-z0-9_-]{1,500})(?:\.([A-Za-z0-9_-]+))?")
# Meta's parameter builder appends an SDK appendix: a 2-character language token or 8 characters.
_APPENDIX_TOKENS = frozenset({"AQ", "Ag", "Aw", "BA", "BQ", "Bg"})
# Hex groups joined by hyphens (a UUID, or the shorter first group of AppsFlyer's own example)
# with an optional short suffix: cookies set by the Web SDK read "<uuid>-p".
_AF_USER_ID = re.compile(r"[0-9A-Fa-f]{1,12}(?:-[0-9A-Fa-f]{1,12}){4}(?:-[A-Za-z0-9]{1,8})?")
_MAX_VALUE_CHARS = 1024  # longer than any identifier we read: such a value is not one of ours


@dataclass(frozen=True, slots=True)
class CookieIdentifiers:
    ga_client_id: str | None = None
    ga_session_id: str | None = None
    fbp: str | None = None
    fbc: str | None = None
    af_user_id: str | None = None
    # Labels ("_ga", "_ga_*", "_fbp", "_fbc", "afUserId", "fbclid") of values present but malformed.
    unparseable: tuple[str, ...] = ()


def parse_cookie_header(header: str) -> dict[str, str]:
    """Name -> value for a Cookie header value; never raises.

    Browsers send the most specific cookie (longest path, exact domain) first when names repeat,
    so the first occurrence of a name wins. Pieces without a name (or without "=") are skipped;
    one pair of surrounding double quotes is removed from a value. Values are not decoded.
    """
    if not isinstance(header, str):
        return {}
    cookies: dict[str, str] = {}
    for piece in header.split(";"):
        name, equals, value = piece.partition("=")
        name = name.strip()
        if not equals or not name or name in cookies:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies


def identifiers_from_cookies(
    header: str | None,
    *,
    landing_url: str | None = None,
    ga_stream_id: str | None = None,
    now_ms: int | None = None,
) -> CookieIdentifiers:
    """The identifiers found in a Cookie header value (and an fbclid in the landing URL); never raises.

    `ga_stream_id` is the GA4 measurement id with or without "G-"; when given, only the `_ga_<id>`
    cookie of that stream is read (another property's session id would not join ours). `now_ms`
    stamps an fbc built from a landing-URL fbclid; pass the time the click was seen when known.
    """
    cookies = parse_cookie_header(header) if header else {}
    bad: list[str] = []

    def read(name: str, valid: Callable[[str], str | None]) -> str | None:
        raw = cookies.get(name)
        if not raw:
            return None
        value = _decoded(raw)
        found = valid(value) if value is not None else None
        if found is None:
            bad.append(name)
        return found

    ga_client_id = read(GA_COOKIE, _client_id)
    ga_session_id = _session_id(cookies, ga_stream_id, bad)
    fbp = read(FBP_COOKIE, lambda value: value if _meta_click_part(value) else None)
    fbc = read(FBC_COOKIE, lambda value: value if _meta_click_part(value) else None)
    url_click = _landing_fbclid(landing_url, bad)
    # As Meta's parameter builder does: a click id in the URL that differs from the cookie's is a
    # newer click and replaces it; the same click keeps the cookie and its original creation time.
    if url_click is not None and (fbc is None or url_click != _meta_click_part(fbc)):
        stamp = now_ms if _is_positive_int(now_ms) else time.time_ns() // 1_000_000
        fbc = f"fb.1.{stamp}.{url_click}"
    af_user_id = read(AF_USER_ID_COOKIE, lambda value: value if _AF_USER_ID.fullmatch(value) else None)
    return CookieIdentifiers(
        ga_client_id=ga_client_id,
        ga_session_id=ga_session_id,
        fbp=fbp,
        fbc=fbc,
        af_user_id=af_user_id,
        unparseable=tuple(bad),
    )


def apply_cookies(context: Context, ids: CookieIdentifiers) -> Context:
    """The context with cookie identifiers filled in where it has none: explicit fields always win."""
    found = {
        "ga_client_id": ids.ga_client_id,
        "ga_session_id": ids.ga_session_id,
        "fbp": ids.fbp,
        "fbc": ids.fbc,
        "af_user_id": ids.af_user_id,
    }
    missing = {name: value for name, value in found.items() if value and not getattr(context, name)}
    return replace(context, **missing) if missing else context


def fill_from_cookies(
    context: Context, header: str | None, *, now_ms: int | None = None, ga_stream_id: str | None = None
) -> Context:
    """The one call a provider mapping needs: read the cookies (an fbclid in the context's
    event_source_url counts as the landing URL), count the malformed ones, fill what the context lacks."""
    ids = identifiers_from_cookies(
        header, landing_url=context.event_source_url, ga_stream_id=ga_stream_id, now_ms=now_ms
    )
    record_unparseable(ids)
    return apply_cookies(context, ids)


def unparseable_metric(label: str) -> str:
    """The metric name counting malformed values of one label, e.g. "CookieUnparseable_fbc"."""
    return f"CookieUnparseable_{_METRIC_SUFFIX.get(label, 'other')}"


def record_unparseable(ids: CookieIdentifiers) -> None:
    """One count per malformed cookie on the shared Metrics; the event itself goes on without it."""
    if not ids.unparseable:
        return
    for label in ids.unparseable:
        metrics.add_metric(unparseable_metric(label), MetricUnit.Count, 1)


def _decoded(raw: str) -> str | None:
    if len(raw) > _MAX_VALUE_CHARS:
        return None
    if "%" not in raw:
        return raw
    # Some cookie libraries percent-encode on write; the identifiers themselves never contain "%".
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return None


def _client_id(value: str) -> str | None:
    match = _GA.fullmatch(value)
    return match.group(1) if match else None


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _session_id(cookies: dict[str, str], ga_stream_id: str | None, bad: list[str]) -> str | None:
    wanted = _stream_suffix(ga_stream_id)
    candidates = [
        value
        for name, value in cookies.items()
        if name.startswith(GA_SESSION_PREFIX)
        and len(name) > len(GA_SESSION_PREFIX)
        and (wanted is None or name[len(GA_SESSION_PREFIX) :].upper() == wanted)
    ]
    seen_value = False
    for raw in candidates:
        if raw == "":
            continue
        seen_value = True
        value = _decoded(raw)
        match = (_GS2.fullmatch(value) or _GS1.fullmatch(value)) if value is not None else None
        if match and int(match.group(1)) > 0:
            return match.group(1)
    if seen_value:
        bad.append(GA_SESSION_LABEL)
    return None


def _stream_suffix(ga_stream_id: str | None) -> str | None:
    if not isinstance(ga_stream_id, str) or not ga_stream_id.strip():
        return None
    suffix = ga_stream_id.strip().upper()
    return suffix[2:] if suffix.startswith("G-") else suffix


def _meta_click_part(value: str) -> str | None:
    """The fourth part (random or fbclid) of a valid fbp/fbc value, else None."""
    match = _META_ID.fullmatch(value)
    if match is None:
        return None
    appendix = match.group(2)
    if appendix is not None and not (len(appendix) == 8 or appendix in _APPENDIX_TOKENS):
        return None
    return match.group(1)


def _landing_fbclid(landing_url: str | None, bad: list[str]) -> str | None:
    if not isinstance(landing_url, str) or "fbclid" not in landing_url:
        return None
    try:
        values = parse_qs(urlsplit(landing_url).query).get(FBCLID_PARAM, [])
    except ValueError:  # urlsplit rejects e.g. a malformed IPv6 host
        values = []
    click = values[0].strip() if values else ""
    if not click:
        return None
    if not _CLICK_ID.fullmatch(click):
        bad.append(FBCLID_PARAM)
        return None
    return click
