"""OAuth access tokens, cached per process and shared by the hook and the trigger.

A poking sensor builds a new hook on every poke and a triggerer runs many triggers on one
connection; caching by credentials (not by hook instance) means one refresh serves all of them
until shortly before the token expires.
"""

from __future__ import annotations

import hashlib
import threading

from airflow_provider_hubexport.api import AccessToken
from airflow_provider_hubexport.hooks.connection import HubSpotConnectionSettings

_cache: dict[str, AccessToken] = {}
_lock = threading.Lock()


def cache_key(settings: HubSpotConnectionSettings) -> str:
    raw = "\0".join([settings.base_url, settings.client_id or "", settings.refresh_token or ""])
    return hashlib.sha256(raw.encode()).hexdigest()


def cached_oauth_token(settings: HubSpotConnectionSettings) -> str | None:
    """A fresh OAuth access token this process refreshed for the connection, if any."""
    if settings.oauth:
        with _lock:
            token = _cache.get(cache_key(settings))
        if token is not None and token.fresh():
            return token.token
    return None


def cached_token(settings: HubSpotConnectionSettings) -> str | None:
    """The access token to send now: a fresh cached OAuth token, else the connection's own."""
    return cached_oauth_token(settings) or settings.access_token


def needs_refresh(settings: HubSpotConnectionSettings) -> bool:
    return settings.oauth and cached_token(settings) is None


def store_token(settings: HubSpotConnectionSettings, token: AccessToken) -> None:
    with _lock:
        _cache[cache_key(settings)] = token


def forget_token(settings: HubSpotConnectionSettings, rejected: str | None) -> None:
    """Drop a cached token that HubSpot just refused, so the next call refreshes."""
    with _lock:
        key = cache_key(settings)
        if rejected is not None and key in _cache and _cache[key].token == rejected:
            del _cache[key]


_refresh_locks: dict[str, threading.Lock] = {}


def refresh_lock(settings: HubSpotConnectionSettings) -> threading.Lock:
    """The sync transport's single-flight lock: one refresh per connection at a time in a process
    (the async transport keeps an ``asyncio.Lock`` per key and event loop instead)."""
    with _lock:
        return _refresh_locks.setdefault(cache_key(settings), threading.Lock())


_masked: set[str] = set()


def not_yet_masked(values: list[str]) -> list[str]:
    """The values this process has not registered with the secrets masker yet.

    Every registration rebuilds the masker's pattern and, on a triggerer, sends a message to the
    supervisor: a thousand waits on one connection must not register its token a thousand times.
    """
    with _lock:
        fresh = [v for v in dict.fromkeys(values) if v and v not in _masked]
        _masked.update(fresh)
    return fresh


def clear_cache() -> None:
    with _lock:
        _cache.clear()
