// http_whoami in JavaScript: what the server established about this request, as JSON.
import { host, basePath, baseUrl, clientIp, secure } from 'canto:http/context@0.1.0';
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@0.2.12';

function methodName(request) {
  const method = request.method(); // variant: { tag: 'get' } ... { tag: 'other', val: 'PURGE' }
  return method.tag === 'other' ? method.val : method.tag.toUpperCase();
}

function path(request) {
  return (request.pathWithQuery() ?? '/').split('?', 1)[0];
}

function respond(out, status, contentType, text) {
  const headers = Fields.fromList([['content-type', new TextEncoder().encode(contentType)]]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(out, { tag: 'ok', val: response });
  const bytes = new TextEncoder().encode(text);
  {
    const stream = body.write();
    // blocking-write-and-flush takes at most 4096 bytes per call.
    for (let i = 0; i < bytes.length; i += 4096) {
      stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
    }
    stream[Symbol.dispose]?.();
  }
  OutgoingBody.finish(body, undefined);
}

// Keys in sorted order, as serde_json (the Rust whoami) writes them.
export const incomingHandler = {
  handle(request, responseOut) {
    const answer = {
      base_path: basePath(),
      base_url: baseUrl(),
      host: host(),
      ip: clientIp(),
      method: methodName(request),
      path: path(request),
      secure: secure(),
    };
    respond(responseOut, 200, 'application/json', JSON.stringify(answer));
  },
};
