"""http_options in Python: declares metadata (default path /opts, served without a
trailing slash, one config option `greeting`) and answers with the options it can
see: `greeting` as declared, and `secret`, undeclared, so it reads as unset."""
from typing import Optional

from wit_world import exports
from wit_world.exports.metadata import ModuleInfo
from wit_world.imports import context, log
from wit_world.imports.types import (
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
)
from componentize_py_types import Ok


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


def shown(value: Optional[str]) -> str:
    return "unset" if value is None else value


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        log.log(log.Level.INFO, "options requested")
        body = "greeting={}\nsecret={}\n".format(
            shown(context.config_option("greeting")),
            shown(context.config_option("secret")),
        )
        respond(response_out, 200, "text/plain", body.encode())


class Metadata(exports.Metadata):
    def describe(self) -> ModuleInfo:
        return ModuleInfo(default_path="/opts", cors=None, options=["greeting"],
                          serve_bare_path=True, streaming_uploads=False)
