// Opens `pairs` × 2 anonymous sessions over BOSH with Strophe.js, has each
// session message its partner, and prints how many logged in and how many
// messages arrived, as JSON.
// Usage: node xmpp_bosh_many.mjs <bosh-url> <domain> <pairs>
import "./xhr_shim.mjs";
import { Strophe, $msg } from "strophe.js";
import { report } from "./report.mjs";

const [bosh, domain, pairsText] = process.argv.slice(2);
const pairs = Number(pairsText);
const out = { online: 0, delivered: 0, errors: [] };
Strophe.setLogLevel(Strophe.LogLevel.FATAL);

function session() {
  const connection = new Strophe.Connection(bosh);
  let resolveMessage;
  const message = new Promise((resolve) => (resolveMessage = resolve));
  connection.addHandler((stanza) => {
    const body = stanza.getElementsByTagName("body")[0];
    if (body) resolveMessage(Strophe.getText(body));
    return true;
  }, null, "message");
  return new Promise((resolve, reject) => {
    connection.connect(domain, null, (status, condition) => {
      if (status === Strophe.Status.CONNECTED) {
        out.online += 1;
        resolve({ connection, jid: connection.jid, message });
      } else if ([Strophe.Status.CONNFAIL, Strophe.Status.AUTHFAIL, Strophe.Status.ERROR].includes(status)) {
        out.errors.push(`status ${status} ${condition ?? ""}`.trim());
        reject(new Error(`status ${status}`));
      }
    });
  });
}

async function main() {
  const sessions = await Promise.all(Array.from({ length: pairs * 2 }, session));
  sessions.forEach((me, i) => me.connection.send($msg({ to: sessions[i ^ 1].jid, type: "chat" }).c("body").t(`from ${i}`)));
  const bodies = await Promise.all(sessions.map((me) => me.message));
  out.delivered = bodies.filter((body, i) => body === `from ${i ^ 1}`).length;
  sessions.forEach((me) => me.connection.disconnect());
}

// Let the disconnects go out before reporting.
report(out, main, 60000, 500);
