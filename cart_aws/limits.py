"""The ingest API's limits, stated once: the app enforces them (``cart_api.settings`` takes them as
its defaults) and the CloudFormation template states the same numbers in front of it (the REST
API stage's throttling, the WAF web ACL's rules, the API function's environment).

Here, below both, because ``cart_api`` may import ``cart_aws`` but not the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

# CORS: what a browser on an allowed origin may send (CART_CORS_ALLOW_ORIGINS lists the origins;
# none by default, which is right for a server-to-server API)
CORS_ALLOW_METHODS = ("GET", "POST", "OPTIONS")
CORS_ALLOW_HEADERS = ("Content-Type", "X-API-Key", "Authorization", "Idempotency-Key")
CORS_EXPOSE_HEADERS = ("Location", "Retry-After")
CORS_MAX_AGE_SECONDS = 600

WAF_WINDOW_SECONDS = 300  # a WAF rate-based rule counts over 5 minutes unless told otherwise


@dataclass(frozen=True)
class ApiLimits:
    """Requests per second and burst allowed per client, and the largest request body in bytes."""

    rate_per_second: float = 500.0
    burst: int = 1000
    max_body_bytes: int = 16_384

    @property
    def waf_requests_per_window_per_ip(self) -> int:
        """The WAF rate-based rule's limit per client IP: one client's rate over the window, so a
        single address sending more than any client may is blocked before API Gateway."""
        return int(self.rate_per_second * WAF_WINDOW_SECONDS)


API_LIMITS = ApiLimits()
