"""The Evolution route table: every endpoint the simulator serves, its name (what `requests`
and the faults count by) and the instance/key guard in front."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wasync.sim.evolution.chats import ChatRoutes
from wasync.sim.evolution.guard import guard
from wasync.sim.evolution.instance import EvoInstance
from wasync.sim.evolution.instances import InstanceRoutes
from wasync.sim.evolution.media import MediaRoutes
from wasync.sim.evolution.send import SendRoutes
from wasync.sim.evolution.state import EvolutionState


def routes(state: EvolutionState) -> list[Route]:
    """The routes of `state`'s app, in matching order."""
    instances, chats, send = InstanceRoutes(state), ChatRoutes(state), SendRoutes(state)
    media = MediaRoutes(state)

    def guarded(
        path: str,
        handler: Callable[[Request, EvoInstance], Awaitable[Response]],
        method: str,
        name: str,
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            return await handler(request, guard(state, request))

        return Route(path, endpoint, methods=[method], name=name)

    return [
        Route("/", instances.root, methods=["GET"], name="root"),
        Route(
            "/instance/fetchInstances",
            instances.fetch_instances,
            methods=["GET"],
            name="instance.fetchInstances",
        ),
        guarded(
            "/instance/connectionState/{instance}",
            instances.connection_state,
            "GET",
            "instance.connectionState",
        ),
        guarded("/chat/findChats/{instance}", chats.find_chats, "POST", "chat.findChats"),
        guarded("/chat/findMessages/{instance}", chats.find_messages, "POST", "chat.findMessages"),
        guarded(
            "/chat/whatsappNumbers/{instance}",
            chats.whatsapp_numbers,
            "POST",
            "chat.whatsappNumbers",
        ),
        guarded(
            "/chat/getBase64FromMediaMessage/{instance}",
            media.get_base64,
            "POST",
            "chat.getBase64FromMediaMessage",
        ),
        guarded("/message/sendText/{instance}", send.send_text, "POST", "message.sendText"),
        guarded("/message/sendMedia/{instance}", send.send_media, "POST", "message.sendMedia"),
        guarded(
            "/message/sendWhatsAppAudio/{instance}",
            send.send_audio,
            "POST",
            "message.sendWhatsAppAudio",
        ),
        guarded("/webhook/set/{instance}", instances.webhook_set, "POST", "webhook.set"),
        guarded("/webhook/find/{instance}", instances.webhook_find, "GET", "webhook.find"),
    ]
