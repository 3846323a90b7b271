// XMPP load for the benchmarks: anonymous sessions over XMPP-over-WebSocket
// (@xmpp/client) for a ws:// URL, over BOSH (Strophe.js) for an http:// one.
// - `pingpong <url> <domain> <pairs> <seconds>`: each pair sends a message
//   back and forth, each waiting for the other's; prints
//   {"messages": n, "rate": per second, "p50_ms": x, "p99_ms": y}.
// - `idle <url> <domain> <count>`: logs `count` sessions in, prints
//   {"online": count}, and holds them until stdin closes.
import { client, xml } from "@xmpp/client";

const [mode, service, domain, countText, secondsText] = process.argv.slice(2);
const count = Number(countText);
const bosh = service.startsWith("http");
const Strophe = bosh ? await import("./xhr_shim.mjs").then(() => import("strophe.js")) : null;
if (Strophe) Strophe.Strophe.setLogLevel(Strophe.Strophe.LogLevel.FATAL);

/** A mailbox: what arrived, and a promise of the next message. */
function mailbox() {
  const inbox = [];
  let wake = null;
  const put = (message) => {
    inbox.push(message);
    if (wake) wake();
  };
  const next = () =>
    inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve) => (wake = () => { wake = null; resolve(inbox.shift()); }));
  return { put, next };
}

async function websocketSession() {
  const xmpp = client({ service, domain });
  xmpp.reconnect.stop();
  xmpp.on("error", () => {});
  const { put, next } = mailbox();
  xmpp.on("stanza", (stanza) => {
    if (stanza.is("message")) put(stanza);
  });
  const jid = (await xmpp.start()).toString();
  const send = (to, body) => xmpp.send(xml("message", { to, type: "chat" }, xml("body", {}, body)));
  return { jid, next, send, stop: () => xmpp.stop().catch(() => {}) };
}

function boshSession() {
  const { Strophe: S, $msg } = Strophe;
  const connection = new S.Connection(service);
  const { put, next } = mailbox();
  connection.addHandler((message) => {
    put(message);
    return true;
  }, null, "message");
  return new Promise((resolve, reject) => {
    connection.connect(domain, null, (status) => {
      if (status === S.Status.CONNECTED) {
        const send = async (to, body) => connection.send($msg({ to, type: "chat" }).c("body").t(body));
        resolve({ jid: connection.jid, next, send, stop: async () => connection.disconnect() });
      } else if ([S.Status.CONNFAIL, S.Status.AUTHFAIL, S.Status.ERROR].includes(status)) {
        reject(new Error(`BOSH status ${status}`));
      }
    });
  });
}

const session = bosh ? boshSession : websocketSession;

async function opened(n) {
  const sessions = [];
  for (let i = 0; i < n; i += 50) {
    sessions.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, session))));
  }
  return sessions;
}

async function pingpong(pairs, seconds) {
  const sessions = await opened(pairs * 2);
  const latencies = [];
  const deadline = Date.now() + seconds * 1000;
  const started = Date.now();
  await Promise.all(
    Array.from({ length: pairs }, async (_, p) => {
      const [a, b] = [sessions[2 * p], sessions[2 * p + 1]];
      while (Date.now() < deadline) {
        const sent = process.hrtime.bigint();
        await a.send(b.jid, "ping");
        await b.next();
        await b.send(a.jid, "pong");
        await a.next();
        latencies.push(Number(process.hrtime.bigint() - sent) / 2e6);
      }
    }),
  );
  const took = (Date.now() - started) / 1000;
  latencies.sort((x, y) => x - y);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0;
  console.log(JSON.stringify({ messages: latencies.length * 2, rate: (latencies.length * 2) / took, p50_ms: at(0.5), p99_ms: at(0.99) }));
  await Promise.all(sessions.map((s) => s.stop()));
}

async function idle(n) {
  const sessions = await opened(n);
  console.log(JSON.stringify({ online: sessions.length }));
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  await Promise.all(sessions.map((s) => s.stop()));
}

const run = mode === "idle" ? idle(count) : pingpong(count, Number(secondsText));
run.then(
  () => process.exit(0),
  (error) => {
    console.error(`xmpp_load: ${error.message || error}`);
    process.exit(1);
  },
);
