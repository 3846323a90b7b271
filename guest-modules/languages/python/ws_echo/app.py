"""http_ws_echo in Python: every WebSocket message comes back to its sender,
text as text and binary as binary; a plain GET says how to connect. Each
event runs in a fresh instance, as in the Rust original."""
from typing import List

from wit_world import exports
from wit_world.imports import websocket
from wit_world.imports.types import Fields, OutgoingBody, OutgoingResponse, ResponseOutparam
from componentize_py_types import Err, Ok


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out: ResponseOutparam) -> None:
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        outgoing = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        # The stream must be dropped (end of `with`) before the body is finished.
        with outgoing.write() as stream:
            stream.blocking_write_and_flush(b"connect with a WebSocket client: every message comes back (Python)\n")
        OutgoingBody.finish(outgoing, None)


class WebsocketHandler(exports.WebsocketHandler):
    def subprotocols(self) -> List[str]:
        return ["echo"]

    def on_open(self) -> None:
        if websocket.current().path_with_query.endswith("?refuse"):
            raise Err(403)

    def on_message(self, message: websocket.Message) -> None:
        websocket.send(websocket.current().id, message)

    def on_close(self, code: int, reason: str) -> None:
        pass
