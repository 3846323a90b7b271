// XMPP load for the benchmarks: anonymous sessions over XMPP-over-WebSocket.
// - `pingpong <ws-url> <domain> <pairs> <seconds>`: each pair sends a message
//   back and forth, each waiting for the other's; prints
//   {"messages": n, "rate": per second, "p50_ms": x, "p99_ms": y}.
// - `idle <ws-url> <domain> <count>`: logs `count` sessions in, prints
//   {"online": count}, and holds them until stdin closes.
import { client, xml } from "@xmpp/client";

const [mode, service, domain, countText, secondsText] = process.argv.slice(2);
const count = Number(countText);

async function session() {
  const xmpp = client({ service, domain });
  xmpp.reconnect.stop();
  xmpp.on("error", () => {});
  const inbox = [];
  let wake = null;
  xmpp.on("stanza", (stanza) => {
    if (!stanza.is("message")) return;
    inbox.push(stanza);
    if (wake) wake();
  });
  const next = () =>
    inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve) => (wake = () => { wake = null; resolve(inbox.shift()); }));
  const jid = (await xmpp.start()).toString();
  return { xmpp, jid, next };
}

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
        await a.xmpp.send(xml("message", { to: b.jid, type: "chat" }, xml("body", {}, "ping")));
        await b.next();
        await b.xmpp.send(xml("message", { to: a.jid, type: "chat" }, xml("body", {}, "pong")));
        await a.next();
        latencies.push(Number(process.hrtime.bigint() - sent) / 2e6);
      }
    }),
  );
  const took = (Date.now() - started) / 1000;
  latencies.sort((x, y) => x - y);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0;
  console.log(JSON.stringify({ messages: latencies.length * 2, rate: (latencies.length * 2) / took, p50_ms: at(0.5), p99_ms: at(0.99) }));
  await Promise.all(sessions.map((s) => s.xmpp.stop().catch(() => {})));
}

async function idle(n) {
  const sessions = await opened(n);
  console.log(JSON.stringify({ online: sessions.length }));
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  await Promise.all(sessions.map((s) => s.xmpp.stop().catch(() => {})));
}

const run = mode === "idle" ? idle(count) : pingpong(count, Number(secondsText));
run.then(
  () => process.exit(0),
  (error) => {
    console.error(`xmpp_load: ${error.message || error}`);
    process.exit(1);
  },
);
