"""WAHA webhook registration: point a session's webhook at this daemon, or read it back.

WAHA has no webhook endpoint of its own: the session config is read, our webhook merged into
`config.webhooks` (others kept) and the whole config PUT back, which restarts the session
(waha.md section 2). Idempotent: nothing is sent when WAHA already has what we want.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from wasync.errors import FatalProviderError
from wasync.providers.base import SessionSetup, WebhookState
from wasync.providers.http import Http

# `message.any` (not also `message`: both doubles every delivery, waha#1384).
WAHA_EVENTS = [
    "message.any",
    "message.ack",
    "message.ack.group",
    "message.revoked",
    "message.edited",
    "message.reaction",
    "session.status",
    "poll.vote",
]
# Our events an older WAHA lacks, newest first: `message.ack.group` is 2025.12.2 (group acks
# came as message.ack before), `message.edited` 2025.6.3. WAHA refuses a config naming an
# event it does not know (400, class-validator's "each value in events must be one of the
# following values: ..."; waha.md 4).
_NEWER_EVENTS = ("message.ack.group", "message.edited")
# What `register` falls back to, in turn, when WAHA refuses the events.
OLDER_WAHA_EVENTS = [
    [e for e in WAHA_EVENTS if e not in _NEWER_EVENTS[: n + 1]] for n in range(len(_NEWER_EVENTS))
]
WAHA_EVENTS_BEFORE_GROUP_ACKS = OLDER_WAHA_EVENTS[0]


class WahaAdmin:
    """`WebhookAdmin` for WAHA: the webhook lives in the session config."""

    async def register(
        self, http: Http, session: str, url: str, secret: str | None, *, label: str
    ) -> WebhookState:
        """Merge our webhook into the session config and PUT it back (WAHA restarts the
        session); a WAHA that refuses a newer event (`message.ack.group` is 2025.12.2,
        `message.edited` 2025.6.3) gets the list without it (`OLDER_WAHA_EVENTS`)."""
        path = f"/api/sessions/{quote(session, safe='')}"
        info = await http.get(path) or {}
        config = dict(info.get("config") or {})
        others = [h for h in config.get("webhooks") or [] if h.get("url") != url]
        ours = _hook(url, secret)
        current = [h for h in config.get("webhooks") or [] if h.get("url") == url]
        tags = _needs_webjs_tags(info, config)
        store = _needs_noweb_store(info, config)
        note = "WAHA restarts the session to apply a new config"
        if tags:
            config["webjs"] = {**(config.get("webjs") or {}), "tagsEventsOn": True}
            note += "; webjs.tagsEventsOn turned on (WEBJS sends no acks without it)"
        if store:
            _store_on(config)
            note += f"; {STORE_NOTE}"
        # Nothing is sent when WAHA already has the hook as we would write it. A refused PUT
        # restarts nothing, so our events are tried first even where an older WAHA took fewer
        # before (it may have been upgraded since), then each older list in turn.
        lists = [WAHA_EVENTS, *OLDER_WAHA_EVENTS]
        for n, events in enumerate(lists):
            ours = {**ours, "events": events}
            if len(current) == 1 and _same(current[0], ours) and not tags and not store:
                return WebhookState(session=label, url=url, events=events, signed=bool(secret))
            config["webhooks"] = [*others, ours]
            try:
                await http.call("PUT", path, json={"config": config})
                break
            except FatalProviderError as exc:
                if n == len(lists) - 1 or not _unknown_events(exc, len(others)):
                    raise
        left = [e for e in WAHA_EVENTS if e not in ours["events"]]
        if left:
            note += f"; this WAHA does not know {', '.join(left)}: left out"
        if "message.ack.group" in left:
            note += " (it predates message.ack.group: group acks come as message.ack)"
        return WebhookState(
            session=label,
            url=url,
            events=list(ours["events"]),
            signed=bool(secret),
            changed=True,
            note=note,
        )

    async def prepare_polling(self, http: Http, session: str, *, label: str) -> SessionSetup:
        """NOWEB lists no chats or messages without its store (waha.md 2): turn on
        `config.noweb.store.enabled` in the session config (WAHA restarts the session)."""
        path = f"/api/sessions/{quote(session, safe='')}"
        info = await http.get(path) or {}
        config = dict(info.get("config") or {})
        if not _needs_noweb_store(info, config):
            return SessionSetup(session=label, changed=False, note="nothing to change")
        _store_on(config)
        await http.call("PUT", path, json={"config": config})
        return SessionSetup(
            session=label, changed=True, note=f"{STORE_NOTE}; WAHA restarts the session"
        )

    async def polling_gaps(self, http: Http, session: str) -> str | None:
        """GOWS lists no edits, deletes nor reactions, and keeps the original text (waha#1635)."""
        info = await http.get(f"/api/sessions/{quote(session, safe='')}") or {}
        if _engine(info) != "GOWS":
            return None
        return "WAHA GOWS lists no edits, deletes for everyone nor reactions (waha#1635)"

    async def status(self, http: Http, session: str, *, label: str) -> WebhookState:
        """The session config's first webhook (and how many more there are)."""
        info = await http.get(f"/api/sessions/{quote(session, safe='')}") or {}
        hooks = (info.get("config") or {}).get("webhooks") or []
        if not hooks:
            return WebhookState(session=label, url=None, events=[], signed=False)
        first = hooks[0]
        more = f" (+{len(hooks) - 1} more)" if len(hooks) > 1 else ""
        return WebhookState(
            session=label,
            url=str(first.get("url")) + more,
            events=list(first.get("events") or []),
            signed=bool((first.get("hmac") or {}).get("key")),
        )


def _hook(url: str, secret: str | None) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "url": url,
        "events": WAHA_EVENTS,
        "retries": {"policy": "exponential", "delaySeconds": 2, "attempts": 15},
    }
    if secret:
        hook["hmac"] = {"key": secret}
    return hook


def _needs_webjs_tags(info: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """A WEBJS session sends `message.ack` only with `config.webjs.tagsEventsOn` (off by
    default since WAHA 2025.8.3; waha.md section 2, waha#1311)."""
    webjs = config.get("webjs")
    return _engine(info) == "WEBJS" and not (
        isinstance(webjs, Mapping) and webjs.get("tagsEventsOn")
    )


STORE_NOTE = (
    "noweb.store.enabled turned on (NOWEB lists no messages without it; what it received "
    "before is not in the store, fullSync applies only when a session is paired)"
)


def _engine(info: Mapping[str, Any]) -> Any:
    engine = info.get("engine")
    return engine.get("engine") if isinstance(engine, Mapping) else engine


def _needs_noweb_store(info: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """A NOWEB session without `config.noweb.store.enabled` (waha.md 2)."""
    noweb = config.get("noweb")
    store = noweb.get("store") if isinstance(noweb, Mapping) else None
    return _engine(info) == "NOWEB" and not (isinstance(store, Mapping) and store.get("enabled"))


def _store_on(config: dict[str, Any]) -> None:
    """`config.noweb.store.enabled = true`, the rest of `noweb` kept."""
    noweb = dict(config.get("noweb") or {})
    noweb["store"] = {**(noweb.get("store") or {}), "enabled": True}
    config["noweb"] = noweb


def _unknown_events(exc: FatalProviderError, index: int) -> bool:
    """WAHA refused our hook (`config.webhooks[index]`) because it does not know one of its
    events: class-validator's 400 for `@IsIn(AllEvents, {each: true})` (`@IsEnum` before),
    "config.webhooks.N.each value in events must be one of the following values: ..."
    (waha.md 4). Another hook's refusal is not ours to work around."""
    ours = f"config.webhooks.{index}.each value in events must be one of"
    return exc.status == 400 and ours in str(exc)


def _same(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    keys = ("url", "hmac", "retries", "events")
    return all(have.get(k) == want.get(k) for k in keys)
