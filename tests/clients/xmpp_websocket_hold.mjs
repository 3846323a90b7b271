// Logs alice in over XMPP-over-WebSocket, prints {"online": jid}, then
// waits for the connection to end and prints how it ended.
// Usage: node --experimental-websocket xmpp_websocket_hold.mjs <ws-url> <domain>
import { client } from "@xmpp/client";

const [service, domain] = process.argv.slice(2);
const out = { errors: [] };
const xmpp = client({ service, domain, username: "alice", password: "secret" });
xmpp.reconnect.stop();
xmpp.on("error", (error) => out.errors.push(error.condition || error.message || String(error)));
xmpp.on("disconnect", ({ clean }) => {
  out.disconnected = { clean };
  console.log(JSON.stringify(out));
  process.exit(0);
});
const timer = setTimeout(() => {
  out.timed_out = true;
  console.log(JSON.stringify(out));
  process.exit(2);
}, 30000);
xmpp.start().then(
  (address) => console.log(JSON.stringify({ online: address.toString() })),
  (error) => {
    clearTimeout(timer);
    out.errors.push(`start: ${error.message || error}`);
    console.log(JSON.stringify(out));
    process.exit(1);
  },
);
