"""http_counter in Python: counters in a wasi:keyvalue store.

`POST <base>/n/<key>` adds 1 and answers the new value; `GET` answers the
value (0 when absent). The store is `counter_store` (default "default"),
which the operator must grant. A store that fails answers 503, one not
granted 403, so a client can tell "not counted" from "counted".
"""
import json

from wit_world import exports
from wit_world.imports import context, store, atomics
from wit_world.imports.types import (
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
    Method_Get, Method_Post,
)
from componentize_py_types import Ok, Err


def respond(out: ResponseOutparam, status: int, body: str) -> None:
    headers = Fields.from_list([("content-type", b"text/plain; charset=utf-8")])
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    outgoing = response.body()
    ResponseOutparam.set(out, Ok(response))
    # The stream must be dropped (end of `with`) before the body is finished.
    with outgoing.write() as stream:
        stream.blocking_write_and_flush(body.encode())
    OutgoingBody.finish(outgoing, None)


def store_name() -> str:
    option = context.config_option("counter_store")
    return json.loads(option) if option else "default"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?", 1)[0]
        key = path[len(context.base_path()):].removeprefix("/n/")
        if not key or key == path:
            return respond(response_out, 404, "not found\n")
        method = request.method()
        try:
            bucket = store.open(store_name())
            if isinstance(method, Method_Post):
                value = atomics.increment(bucket, key, 1)
            elif isinstance(method, Method_Get):
                found = bucket.get(key)
                value = int(found.decode()) if found is not None else 0
            else:
                return respond(response_out, 405, "method not allowed\n")
        except Err as error:
            if isinstance(error.value, store.Error_AccessDenied):
                return respond(response_out, 403, "store: access denied\n")
            if isinstance(error.value, store.Error_Other):
                return respond(response_out, 503, f"store: {error.value.value}\n")
            return respond(response_out, 503, "store: no such store\n")
        respond(response_out, 200, f"{value}\n")
