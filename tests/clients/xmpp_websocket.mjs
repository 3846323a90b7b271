// Two users log in over XMPP-over-WebSocket (RFC 7395) with @xmpp/client,
// exchange messages, read their rosters and leave; prints what happened as
// JSON. Usage: node --experimental-websocket xmpp_websocket.mjs <ws-url> <domain> [pause]
// With `pause`, it prints {"online": true} once both are logged in and waits
// for a line on stdin before the messages.
import { client, xml } from "@xmpp/client";
import { report } from "./report.mjs";

const [service, domain, pause] = process.argv.slice(2);

function line() {
  return new Promise((resolve) => process.stdin.once("data", resolve));
}
const out = { errors: [] };

function connect(username) {
  const xmpp = client({ service, domain, username, password: "secret" });
  xmpp.on("error", (error) => out.errors.push(`${username}: ${error.message || error}`));
  return xmpp;
}

function nextMessage(xmpp) {
  return new Promise((resolve) => {
    xmpp.on("stanza", (stanza) => {
      if (stanza.is("message") && stanza.getChildText("body")) resolve(stanza);
    });
  });
}

async function main() {
  const alice = connect("alice");
  const bob = connect("bob");
  out.alice = (await alice.start()).toString();
  out.bob = (await bob.start()).toString();
  const roster = await alice.iqCaller.request(xml("iq", { type: "get" }, xml("query", { xmlns: "jabber:iq:roster" })));
  out.roster = roster.getChild("query")?.attrs.xmlns ?? null;
  await alice.send(xml("presence"));
  await bob.send(xml("presence"));
  if (pause === "pause") {
    console.log(JSON.stringify({ online: true }));
    await line();
  }

  const toBob = nextMessage(bob);
  await alice.send(xml("message", { to: out.bob, type: "chat" }, xml("body", {}, "hello bob")));
  const atBob = await toBob;
  out.bob_got = { from: atBob.attrs.from, body: atBob.getChildText("body") };

  const toAlice = nextMessage(alice);
  await bob.send(xml("message", { to: out.alice, type: "chat" }, xml("body", {}, "hello alice ✓ <&>")));
  const atAlice = await toAlice;
  out.alice_got = { from: atAlice.attrs.from, body: atAlice.getChildText("body") };

  await alice.stop();
  await bob.stop();
  out.stopped = true;
}

report(out, main, 20000);
