// One user over BOSH (Strophe.js) and one over XMPP-over-WebSocket
// (@xmpp/client) log in, message each other and leave; prints what happened
// as JSON. Usage:
//   node --experimental-websocket xmpp_bosh.mjs <bosh-url> <ws-url> <domain> [pause]
// With `pause`, it prints {"online": true} once both are logged in and waits
// for a line on stdin before the messages.
import "./xhr_shim.mjs";
import { Strophe, $iq, $msg, $pres } from "strophe.js";
import { client, xml } from "@xmpp/client";
import { report } from "./report.mjs";

const [bosh, websocket, domain, pause] = process.argv.slice(2);
const out = { errors: [] };
Strophe.setLogLevel(process.env.STROPHE_DEBUG ? Strophe.LogLevel.DEBUG : Strophe.LogLevel.FATAL);
const line = () => new Promise((resolve) => process.stdin.once("data", resolve));

/** Strophe over BOSH, logged in as `username`; resolves once connected. */
function boshUser(username) {
  const connection = new Strophe.Connection(bosh);
  let onMessage = () => {};
  connection.addHandler((message) => {
    const body = message.getElementsByTagName("body")[0];
    if (body) onMessage({ from: message.getAttribute("from"), body: Strophe.getText(body) });
    return true;
  }, null, "message");
  return new Promise((resolve, reject) => {
    connection.connect(`${username}@${domain}`, "secret", (status, condition) => {
      if (status === Strophe.Status.CONNECTED) {
        resolve({ connection, next: () => new Promise((r) => (onMessage = r)) });
      } else if ([Strophe.Status.CONNFAIL, Strophe.Status.AUTHFAIL, Strophe.Status.ERROR].includes(status)) {
        out.errors.push(`${username}: status ${status} ${condition ?? ""}`.trim());
        reject(new Error(`status ${status}`));
      } else if (status === Strophe.Status.DISCONNECTED) {
        out.disconnected = (out.disconnected ?? 0) + 1;
      }
    });
  });
}

function unescapeBody(text) {
  // Strophe.getText leaves the XML escapes in.
  return Strophe.xmlunescape(text);
}

async function main() {
  const alice = await boshUser("alice");
  out.alice = alice.connection.jid;
  const bob = client({ service: websocket, domain, username: "bob", password: "secret" });
  bob.on("error", (error) => out.errors.push(`bob: ${error.message || error}`));
  out.bob = (await bob.start()).toString();

  const roster = await new Promise((resolve) =>
    alice.connection.sendIQ($iq({ type: "get" }).c("query", { xmlns: "jabber:iq:roster" }), resolve, () => resolve(null)),
  );
  out.roster = roster?.getElementsByTagName("query")[0]?.getAttribute("xmlns") ?? null;
  alice.connection.send($pres());
  await bob.send(xml("presence"));
  if (pause === "pause") {
    console.log(JSON.stringify({ online: true }));
    await line();
  }

  const toBob = new Promise((resolve) =>
    bob.on("stanza", (stanza) => {
      if (stanza.is("message") && stanza.getChildText("body")) resolve(stanza);
    }),
  );
  alice.connection.send($msg({ to: out.bob, type: "chat" }).c("body").t("hello bob"));
  const atBob = await toBob;
  out.bob_got = { from: atBob.attrs.from, body: atBob.getChildText("body") };

  const toAlice = alice.next();
  await bob.send(xml("message", { to: out.alice, type: "chat" }, xml("body", {}, "hello alice ✓ <&>")));
  const atAlice = await toAlice;
  out.alice_got = { from: atAlice.from, body: unescapeBody(atAlice.body) };

  await new Promise((resolve) => {
    const timer = setInterval(() => {
      if (out.disconnected) {
        clearInterval(timer);
        resolve();
      }
    }, 50);
    alice.connection.disconnect();
  });
  await bob.stop();
  out.stopped = true;
}

report(out, main, 30000);
