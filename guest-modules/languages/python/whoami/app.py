"""http_whoami in Python: what the server established about this request, as JSON."""
import json

from wit_world import exports
from wit_world.imports import context
from wit_world.imports.types import (
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
    Method_Get, Method_Head, Method_Post, Method_Put, Method_Delete,
    Method_Connect, Method_Options, Method_Trace, Method_Patch, Method_Other,
)
from componentize_py_types import Ok

_METHODS = {
    Method_Get: "GET", Method_Head: "HEAD", Method_Post: "POST", Method_Put: "PUT",
    Method_Delete: "DELETE", Method_Connect: "CONNECT", Method_Options: "OPTIONS",
    Method_Trace: "TRACE", Method_Patch: "PATCH",
}


def method_name(request: IncomingRequest) -> str:
    method = request.method()
    if isinstance(method, Method_Other):
        return method.value
    return _METHODS[type(method)]


def path(request: IncomingRequest) -> str:
    return (request.path_with_query() or "/").split("?", 1)[0]


def respond(out: ResponseOutparam, status: int, content_type: str, body: bytes) -> None:
    headers = Fields.from_list([("content-type", content_type.encode())])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(out, Ok(response))
    # The stream must be dropped (end of `with`) before the body is finished.
    with outgoing.write() as stream:
        # blocking-write-and-flush takes at most 4096 bytes per call.
        for i in range(0, len(body), 4096):
            stream.blocking_write_and_flush(body[i:i + 4096])
    OutgoingBody.finish(outgoing, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        answer = {
            "host": context.host(),
            "method": method_name(request),
            "path": path(request),
            "base_path": context.base_path(),
            "base_url": context.base_url(),
            "ip": context.client_ip(),
            "secure": context.secure(),
        }
        respond(response_out, 200, "application/json",
                json.dumps(answer, separators=(",", ":"), sort_keys=True).encode())
