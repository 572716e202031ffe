"""The client's address behind a reverse proxy, for IP-keyed rate limits (django-ratelimit's
RATELIMIT_IP_META_KEY and allauth's TRUSTED_CLIENT_IP_HEADER).

Behind a proxy every request comes from the proxy's address, so a limit keyed on REMOTE_ADDR would
count all visitors as one: one person guessing a share link's password would lock everyone out of it.
With CLIENT_IP_HEADER set (e.g. `X-Real-IP`), the address is read from that header, which the proxy
must set itself, overwriting any the client sent. A value that is not an IP address, or a request
without the header (one that did not come through the proxy), falls back to REMOTE_ADDR.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


def client_ip(request: Any) -> str:
    value = request.headers.get(settings.CLIENT_IP_HEADER, "") if settings.CLIENT_IP_HEADER else ""
    value = value.split(",")[0].strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return request.META["REMOTE_ADDR"]
