"""Reading one chat's messages in a time window, page by page, whatever the engine does with
offsets: shared by the poller and backfill.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

from wasync.providers.base import Page, Provider

MAX_PAGES = 1000


async def window_pages(
    provider: Provider,
    chat_id: str | None,
    *,
    since: float,
    until: float | None,
    page_size: int,
    max_pages: int = MAX_PAGES,
    reread_ties: bool = False,
) -> AsyncGenerator[Page, None]:
    """Every page of a chat's messages in `[since, until]`, for the poller and backfill.

    Pages by offset; when a page brings nothing new (an engine that ignores offsets, or
    Evolution's untied ordering), restarts below the oldest row seen by narrowing `until`.
    A page that is all one second (`until`) steps just below it. Stops at the provider's
    `total`, after `max_pages` requests, or at a short page; when the provider's pages may
    come back short before the end (`provider.short_pages`: WAHA WEBJS drops notification
    rows; "increase offset always by limit, even if you get less messages", waha.md 3), only
    at an empty one.

    `reread_ties`: when the walk ends with fewer rows than `total`, read each full page's
    oldest second again on its own. Evolution orders by second only, so rows of the second
    a page ends on can swap across the boundary and be skipped (evolution.md 5.2). Backfill
    has its own, window-level answer to that, and leaves this off.
    """
    seen: set[str] = set()
    boundaries: list[float] = []
    page_no, total = 1, None
    for _ in range(max_pages):
        page = await provider.messages(
            chat_id, since=since, until=until, limit=page_size, page=page_no
        )
        fresh = [i for i in page.ids if i not in seen]
        seen.update(page.ids)
        total = page.total if page.total is not None else total
        yield page
        if total is not None and len(seen) >= total:
            return
        if page.size < page_size:
            if page.size == 0 or not provider.short_pages:
                break
        elif page.min_ts is not None:
            boundaries.append(page.min_ts)
        if fresh:
            page_no += 1
        elif page.min_ts is not None and page.min_ts != until:
            until, page_no = page.min_ts, 1  # offset ignored: walk the window down instead
        elif page.min_ts is not None and page.min_ts > since:
            until, page_no = page.min_ts - 0.001, 1  # a full page in one second: go below it
        else:
            break
    if not reread_ties or total is None:
        return
    for second in dict.fromkeys(boundaries):
        if len(seen) >= total:
            return
        page = await provider.messages(chat_id, since=second, until=second, limit=page_size, page=1)
        seen.update(page.ids)
        yield page
