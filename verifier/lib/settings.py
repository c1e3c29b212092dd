"""Settings: one typed object, read from the environment once, passed down.

No other module reads the environment. CLI flags override fields through
``Settings.from_env(**overrides)``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

DEFAULT_CARD_BRIDGE_PORT = 7471
"""The loopback port of ``verifier card-bridge`` on a terminal (docs/card-bridge.md)."""
DEFAULT_CARD_BRIDGE_ORIGIN = f"http://127.0.0.1:{DEFAULT_CARD_BRIDGE_PORT}"
"""Where the counter page looks for the card-reader bridge of its terminal."""

# An origin as a browser sends it: scheme, host, optional port; no path, no wildcard.
_ORIGIN_RE = re.compile(r"https?://(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
# The card bridge runs on the terminal itself: only a loopback origin over plain HTTP
# (a browser treats loopback as potentially trustworthy, so an HTTPS page may call it).
_LOOPBACK_ORIGIN_RE = re.compile(r"http://(?:127\.0\.0\.1|localhost|\[::1\]):[0-9]{1,5}")


def parse_origins(text: str) -> tuple[str, ...]:
    """``"https://a.example, https://b.example:8443"`` -> a tuple of exact origins; ValueError on anything else."""
    origins = tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())
    for origin in origins:
        if not _ORIGIN_RE.fullmatch(origin):
            raise ValueError(f"not an origin (scheme://host[:port], no path, no wildcard): {origin!r}")
    return origins


def check_card_bridge_origin(origin: str) -> str:
    """The bridge origin, or "" (no card reads from the page); ValueError if it is not loopback HTTP."""
    origin = origin.strip().rstrip("/")
    if origin and not _LOOPBACK_ORIGIN_RE.fullmatch(origin):
        raise ValueError(f"the card bridge origin is http://127.0.0.1:PORT (or localhost, [::1]), not {origin!r}")
    return origin


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _days(text: str) -> tuple[int, ...]:
    """``"60,45,31"`` -> (60, 45, 31): distinct, largest first."""
    return tuple(sorted({int(part) for part in text.split(",") if part.strip()}, reverse=True))


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str = ""
    """Redis or Valkey URL (redis://, rediss://, redis+cluster:// for a Cluster); empty: start a private server."""
    store_url: str = ""
    """The store of record (API keys, terminals, webhook subscriptions, the notification outbox, the audit):
    what cannot be rebuilt from the upstream. A Redis/Valkey URL, apart from the index's; empty: see
    ``store_url_or_index``."""
    upstream_url: str = ""
    """Base URL of the upstream permit system (or its simulator)."""
    state_dir: Path = Path(".state")
    """Where the private Redis-protocol servers keep their data and the demo its keys."""
    audit_dir: str = ""
    """Where each API worker writes its audit records through to append-only files (a durable local
    disk in production); empty: ``state_dir/audit``. See ``audit_path``."""
    host: str = "127.0.0.1"
    """Address the API binds to."""
    port: int = 8000
    """Port the API binds to."""
    workers: int = 2
    """API worker processes."""
    staleness_bound_s: float = 120.0
    """An index older than this (seconds since the sync job last confirmed it) answers STATUS_UNAVAILABLE."""
    rate_limit_per_s: float = 200.0
    """Sustained requests per second allowed per API key."""
    rate_limit_burst: int = 400
    """Requests an API key may make in a burst above the sustained rate."""
    sync_poll_interval_s: float = 0.2
    """How often the sync job polls the upstream change feed."""
    sync_lock_ttl_s: float = 1.0
    """Expiry of the sync job's leader lock (renewed every third of it): a standby takes over at
    most this long (plus its 0.1 s poll) after the leader died."""
    sync_accept_regression: bool = False
    """Let the sync job switch in an upstream state older than the index's (a regression) without
    waiting for ``verifier index accept-regression`` (it still alerts)."""
    sync_instance: str = ""
    """The sync job's identity (no ':'); empty: the host name. A restarted job of the same identity
    reclaims its dead predecessor's lock at once (see verifier.sync.job)."""
    sync_page_size: int = 1000
    """Events the sync job asks the upstream feed for per page (each page is applied atomically)."""
    status_list_base_url: str = ""
    """The URI prefix of the Status Lists (WIRE-FORMAT 8): list ``<name>`` is ``BASE/<name>``, its ``sub``
    and the ``uri`` of the tokens that point into it; empty: ``http://HOST:PORT/v1/status-lists``."""
    status_list_ttl_s: int = 300
    """A Status List's ``ttl``: how long a copy may be kept; lists are re-signed at least this often."""
    status_list_lifetime_s: int = 3600
    """A Status List's ``exp - iat``: how long a copy may be used at most (an offline scanner's bound)."""
    log_level: str = "INFO"
    """Application log level."""
    log_format: str = "text"
    """Log lines as ``text`` or ``json`` (JSON lines), the same in every process (verifier.lib.logging)."""
    progress: str = "auto"
    """Progress bars of the long commands: ``auto`` (stderr a terminal), ``on``, ``off``; always off on CI
    (``$CI`` set) and in JSON log mode (verifier.lib.progress)."""
    cors_origins: tuple[str, ...] = ()
    """Origins of other web front ends allowed to call the API from a browser (CORS); default none."""
    card_bridge_origin: str = DEFAULT_CARD_BRIDGE_ORIGIN
    """The counter page's card-reader bridge (loopback HTTP); the one origin its CSP lets it connect to besides its own."""
    counter_clear_s: float = 30.0
    """Default seconds after which the counter page clears a verdict (each terminal may change it)."""
    holder_session_ttl_s: float = 600.0
    """How long a holder token of the e-card platform is valid (seconds)."""
    holder_history_days: int = 365
    """How long "who verified me" keeps each check of a permit (days; 12 months by default)."""
    holder_history_cap: int = 10_000
    """The most checks "who verified me" keeps per permit (the oldest go first)."""
    holder_match_per_s: float = 5.0
    """Real-name match attempts per second allowed per platform key (burst: 4 s worth)."""
    holder_match_per_identifier_per_h: int = 10
    """Real-name match attempts per hour allowed per permit or social security number."""
    # -- notifications (verifier/notify) --
    change_stream_maxlen: int = 200_000
    """Entries the index's change stream keeps (about): the sync job trims it; bounds webhook replay."""
    notify_partitions: int = 16
    """Outbox partitions per subscription, shared out among the ``verifier notify`` processes (fixed at first start)."""
    notify_concurrency: int = 64
    """Webhook deliveries one ``verifier notify`` process makes at once."""
    notify_lease_ttl_s: float = 10.0
    """Expiry of a notifier's partition leases: another takes over this long after it died."""
    notify_retry_base_s: float = 5.0
    """First retry delay of a failed delivery; doubles each attempt (with jitter) up to ``notify_retry_cap_s``."""
    notify_retry_cap_s: float = 3600.0
    """Longest delay between two attempts of one delivery."""
    notify_retry_window_s: float = 259_200.0
    """How long a delivery is retried before it is dead-lettered (3 days)."""
    notify_pause_after_failures: int = 20
    """An endpoint is paused after this many failed attempts in a row ..."""
    notify_pause_after_s: float = 3600.0
    """... spanning at least this many seconds without a success."""
    notify_connect_timeout_s: float = 5.0
    """Connect timeout of a webhook delivery."""
    notify_read_timeout_s: float = 15.0
    """Read timeout of a webhook delivery (the receiver's answer)."""
    notify_metrics_port: int = 0
    """Port of ``verifier notify``'s Prometheus /metrics (0: none)."""
    webhook_allow_loopback: bool = True
    """Webhook URLs may point at loopback (http is only ever allowed there): for tests and the demo; turn off in production."""
    webhook_allow_networks: str = ""
    """Comma-separated networks (CIDR) that webhook URLs may reach although private or link-local."""
    reminder_days: tuple[int, ...] = (60, 45, 31)
    """Days before a permit's end (vt) at which its expiry reminders go out, once each."""
    reminder_scan_interval_s: float = 3600.0
    """How often the notifier scans the index for expiry reminders that are due."""
    extra: dict[str, str] = field(default_factory=dict)
    """Reserved."""

    @classmethod
    def from_env(cls, **overrides: object) -> "Settings":
        env = {
            "redis_url": _env("REDIS_URL", ""),
            "store_url": _env("VERIFIER_STORE_URL", ""),
            "upstream_url": _env("UPSTREAM_URL", ""),
            "state_dir": Path(_env("VERIFIER_STATE_DIR", ".state")),
            "audit_dir": _env("VERIFIER_AUDIT_DIR", ""),
            "host": _env("VERIFIER_HOST", "127.0.0.1"),
            "port": int(_env("VERIFIER_PORT", "8000")),
            "workers": int(_env("VERIFIER_WORKERS", "2")),
            "staleness_bound_s": float(_env("VERIFIER_STALENESS_BOUND_S", "120")),
            "rate_limit_per_s": float(_env("VERIFIER_RATE_LIMIT_PER_S", "200")),
            "rate_limit_burst": int(_env("VERIFIER_RATE_LIMIT_BURST", "400")),
            "sync_poll_interval_s": float(_env("VERIFIER_SYNC_POLL_INTERVAL_S", "0.2")),
            "sync_lock_ttl_s": float(_env("VERIFIER_SYNC_LOCK_TTL_S", "1.0")),
            "sync_instance": _env("VERIFIER_SYNC_INSTANCE", ""),
            "sync_accept_regression": _env("VERIFIER_SYNC_ACCEPT_REGRESSION", "") in ("1", "true", "yes"),
            "sync_page_size": int(_env("VERIFIER_SYNC_PAGE_SIZE", "1000")),
            "status_list_base_url": _env("VERIFIER_STATUS_LIST_BASE_URL", ""),
            "status_list_ttl_s": int(_env("VERIFIER_STATUS_LIST_TTL_S", "300")),
            "status_list_lifetime_s": int(_env("VERIFIER_STATUS_LIST_LIFETIME_S", "3600")),
            "log_level": _env("VERIFIER_LOG_LEVEL", "INFO"),
            "log_format": _env("VERIFIER_LOG_FORMAT", "text"),
            "progress": _env("VERIFIER_PROGRESS", "auto"),
            "cors_origins": parse_origins(_env("VERIFIER_CORS_ORIGINS", "")),
            "card_bridge_origin": _env("VERIFIER_CARD_BRIDGE_ORIGIN", DEFAULT_CARD_BRIDGE_ORIGIN),
            "counter_clear_s": float(_env("VERIFIER_COUNTER_CLEAR_S", "30")),
            "holder_session_ttl_s": float(_env("VERIFIER_HOLDER_SESSION_TTL_S", "600")),
            "holder_history_days": int(_env("VERIFIER_HOLDER_HISTORY_DAYS", "365")),
            "holder_history_cap": int(_env("VERIFIER_HOLDER_HISTORY_CAP", "10000")),
            "holder_match_per_s": float(_env("VERIFIER_HOLDER_MATCH_PER_S", "5")),
            "holder_match_per_identifier_per_h": int(_env("VERIFIER_HOLDER_MATCH_PER_IDENTIFIER_PER_H", "10")),
            "change_stream_maxlen": int(_env("VERIFIER_CHANGE_STREAM_MAXLEN", "200000")),
            "notify_partitions": int(_env("VERIFIER_NOTIFY_PARTITIONS", "16")),
            "notify_concurrency": int(_env("VERIFIER_NOTIFY_CONCURRENCY", "64")),
            "notify_lease_ttl_s": float(_env("VERIFIER_NOTIFY_LEASE_TTL_S", "10")),
            "notify_retry_base_s": float(_env("VERIFIER_NOTIFY_RETRY_BASE_S", "5")),
            "notify_retry_cap_s": float(_env("VERIFIER_NOTIFY_RETRY_CAP_S", "3600")),
            "notify_retry_window_s": float(_env("VERIFIER_NOTIFY_RETRY_WINDOW_S", "259200")),
            "notify_pause_after_failures": int(_env("VERIFIER_NOTIFY_PAUSE_AFTER_FAILURES", "20")),
            "notify_pause_after_s": float(_env("VERIFIER_NOTIFY_PAUSE_AFTER_S", "3600")),
            "notify_connect_timeout_s": float(_env("VERIFIER_NOTIFY_CONNECT_TIMEOUT_S", "5")),
            "notify_read_timeout_s": float(_env("VERIFIER_NOTIFY_READ_TIMEOUT_S", "15")),
            "notify_metrics_port": int(_env("VERIFIER_NOTIFY_METRICS_PORT", "0")),
            "webhook_allow_loopback": _env("VERIFIER_WEBHOOK_ALLOW_LOOPBACK", "1").lower() not in ("0", "false", "no", "off"),
            "webhook_allow_networks": _env("VERIFIER_WEBHOOK_ALLOW_NETWORKS", ""),
            "reminder_days": _days(_env("VERIFIER_REMINDER_DAYS", "60,45,31")),
            "reminder_scan_interval_s": float(_env("VERIFIER_REMINDER_SCAN_INTERVAL_S", "3600")),
        }
        known = {f.name for f in fields(cls)}
        env.update({k: v for k, v in overrides.items() if k in known and v is not None})
        origins = env["cors_origins"]  # a flag gives a list, the environment a comma-separated text
        env["cors_origins"] = parse_origins(origins if isinstance(origins, str) else ",".join(origins))  # type: ignore[arg-type]
        env["card_bridge_origin"] = check_card_bridge_origin(str(env["card_bridge_origin"]))
        if not 1 <= float(env["counter_clear_s"]) <= 3600:  # type: ignore[arg-type]
            raise ValueError("the counter's verdict clear time is 1 to 3600 seconds")
        env["progress"] = str(env["progress"]).lower()
        if env["progress"] not in ("auto", "on", "off"):
            raise ValueError(f"progress is auto, on or off, not {env['progress']!r} (VERIFIER_PROGRESS)")
        if _env("CI", "").lower() not in ("", "0", "false", "no"):
            env["progress"] = "off"  # never a bar in a CI log, whatever a flag says
        env["log_format"] = str(env["log_format"]).lower()
        if env["log_format"] not in ("text", "json"):
            raise ValueError(f"the log format is text or json, not {env['log_format']!r} (VERIFIER_LOG_FORMAT)")
        return cls(**env)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` in a child process (an API worker) rebuild these settings."""
        return {
            "REDIS_URL": self.redis_url,
            "VERIFIER_STORE_URL": self.store_url,
            "UPSTREAM_URL": self.upstream_url,
            "VERIFIER_STATE_DIR": str(self.state_dir),
            "VERIFIER_AUDIT_DIR": self.audit_dir,
            "VERIFIER_HOST": self.host,
            "VERIFIER_PORT": str(self.port),
            "VERIFIER_WORKERS": str(self.workers),
            "VERIFIER_STALENESS_BOUND_S": repr(self.staleness_bound_s),
            "VERIFIER_RATE_LIMIT_PER_S": repr(self.rate_limit_per_s),
            "VERIFIER_RATE_LIMIT_BURST": str(self.rate_limit_burst),
            "VERIFIER_SYNC_POLL_INTERVAL_S": repr(self.sync_poll_interval_s),
            "VERIFIER_SYNC_LOCK_TTL_S": repr(self.sync_lock_ttl_s),
            "VERIFIER_SYNC_INSTANCE": self.sync_instance,
            "VERIFIER_SYNC_ACCEPT_REGRESSION": "1" if self.sync_accept_regression else "",
            "VERIFIER_SYNC_PAGE_SIZE": str(self.sync_page_size),
            "VERIFIER_STATUS_LIST_BASE_URL": self.status_list_base_url,
            "VERIFIER_STATUS_LIST_TTL_S": str(self.status_list_ttl_s),
            "VERIFIER_STATUS_LIST_LIFETIME_S": str(self.status_list_lifetime_s),
            "VERIFIER_LOG_LEVEL": self.log_level,
            "VERIFIER_LOG_FORMAT": self.log_format,
            "VERIFIER_PROGRESS": self.progress,
            "VERIFIER_CORS_ORIGINS": ",".join(self.cors_origins),
            "VERIFIER_CARD_BRIDGE_ORIGIN": self.card_bridge_origin,
            "VERIFIER_COUNTER_CLEAR_S": repr(self.counter_clear_s),
            "VERIFIER_HOLDER_SESSION_TTL_S": repr(self.holder_session_ttl_s),
            "VERIFIER_HOLDER_HISTORY_DAYS": str(self.holder_history_days),
            "VERIFIER_HOLDER_HISTORY_CAP": str(self.holder_history_cap),
            "VERIFIER_HOLDER_MATCH_PER_S": repr(self.holder_match_per_s),
            "VERIFIER_HOLDER_MATCH_PER_IDENTIFIER_PER_H": str(self.holder_match_per_identifier_per_h),
            "VERIFIER_CHANGE_STREAM_MAXLEN": str(self.change_stream_maxlen),
            "VERIFIER_NOTIFY_PARTITIONS": str(self.notify_partitions),
            "VERIFIER_NOTIFY_CONCURRENCY": str(self.notify_concurrency),
            "VERIFIER_NOTIFY_LEASE_TTL_S": repr(self.notify_lease_ttl_s),
            "VERIFIER_NOTIFY_RETRY_BASE_S": repr(self.notify_retry_base_s),
            "VERIFIER_NOTIFY_RETRY_CAP_S": repr(self.notify_retry_cap_s),
            "VERIFIER_NOTIFY_RETRY_WINDOW_S": repr(self.notify_retry_window_s),
            "VERIFIER_NOTIFY_PAUSE_AFTER_FAILURES": str(self.notify_pause_after_failures),
            "VERIFIER_NOTIFY_PAUSE_AFTER_S": repr(self.notify_pause_after_s),
            "VERIFIER_NOTIFY_CONNECT_TIMEOUT_S": repr(self.notify_connect_timeout_s),
            "VERIFIER_NOTIFY_READ_TIMEOUT_S": repr(self.notify_read_timeout_s),
            "VERIFIER_NOTIFY_METRICS_PORT": str(self.notify_metrics_port),
            "VERIFIER_WEBHOOK_ALLOW_LOOPBACK": "1" if self.webhook_allow_loopback else "0",
            "VERIFIER_WEBHOOK_ALLOW_NETWORKS": self.webhook_allow_networks,
            "VERIFIER_REMINDER_DAYS": ",".join(str(d) for d in self.reminder_days),
            "VERIFIER_REMINDER_SCAN_INTERVAL_S": repr(self.reminder_scan_interval_s),
        }

    @property
    def store_url_or_index(self) -> str:
        """Where the store of record is: ``store_url``, or (not set) the index's own Redis."""
        return self.store_url or self.redis_url

    @property
    def audit_path(self) -> Path:
        """The audit files' folder: ``audit_dir``, or (not set) ``state_dir/audit``."""
        return Path(self.audit_dir) if self.audit_dir else self.state_dir / "audit"

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]
