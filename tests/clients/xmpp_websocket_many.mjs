// Opens `pairs` × 2 anonymous sessions over XMPP-over-WebSocket, has each
// session message its partner, and prints how many logged in and how many
// messages arrived, as JSON.
// Usage: node --experimental-websocket xmpp_websocket_many.mjs <ws-url> <domain> <pairs>
import { client, xml } from "@xmpp/client";
import { report } from "./report.mjs";

const [service, domain, pairsText] = process.argv.slice(2);
const pairs = Number(pairsText);
const out = { online: 0, delivered: 0, errors: [] };

async function session() {
  const xmpp = client({ service, domain });
  xmpp.reconnect.stop();
  xmpp.on("error", (error) => out.errors.push(String(error.condition || error.message || error)));
  let resolveMessage;
  const message = new Promise((resolve) => (resolveMessage = resolve));
  xmpp.on("stanza", (stanza) => {
    if (stanza.is("message") && stanza.getChildText("body")) resolveMessage(stanza.getChildText("body"));
  });
  const jid = await xmpp.start();
  out.online += 1;
  return { xmpp, jid: jid.toString(), message };
}

async function main() {
  const sessions = await Promise.all(Array.from({ length: pairs * 2 }, session));
  await Promise.all(
    sessions.map((me, i) => {
      const partner = sessions[i ^ 1];
      return me.xmpp.send(xml("message", { to: partner.jid, type: "chat" }, xml("body", {}, `from ${i}`)));
    }),
  );
  const bodies = await Promise.all(sessions.map((me) => me.message));
  out.delivered = bodies.filter((body, i) => body === `from ${i ^ 1}`).length;
  await Promise.all(sessions.map((me) => me.xmpp.stop()));
}

report(out, main, 60000);
