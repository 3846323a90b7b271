// http_options in JavaScript: declares metadata (default path /opts, served without a
// trailing slash, one config option `greeting`) and answers with the options it can
// see: `greeting` as declared, and `secret`, undeclared, so it reads as unset.
import { configOption } from 'canto:http/context@0.1.0';
import { log } from 'canto:http/log@0.1.0';
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@0.2.12';

function respond(out, status, contentType, text) {
  const headers = Fields.fromList([['content-type', new TextEncoder().encode(contentType)]]);
  const response = new OutgoingResponse(headers);
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(out, { tag: 'ok', val: response });
  const bytes = new TextEncoder().encode(text);
  {
    const stream = body.write();
    for (let i = 0; i < bytes.length; i += 4096) {
      stream.blockingWriteAndFlush(bytes.subarray(i, i + 4096));
    }
    stream[Symbol.dispose]?.();
  }
  OutgoingBody.finish(body, undefined);
}

// option<string> arrives as a string or undefined.
const shown = (value) => value ?? 'unset';

export const incomingHandler = {
  handle(_request, responseOut) {
    log('info', 'options requested');
    const body = `greeting=${shown(configOption('greeting'))}\nsecret=${shown(configOption('secret'))}\n`;
    respond(responseOut, 200, 'text/plain', body);
  },
};

export const metadata = {
  describe() {
    return { defaultPath: '/opts', cors: undefined, options: ['greeting'], serveBarePath: true, streamingUploads: false };
  },
};
