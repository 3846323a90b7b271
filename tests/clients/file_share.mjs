// XEP-0363 as a client does it: alice asks the XMPP server's upload
// component for a slot (@xmpp/client), PUTs the file to the slot's URL with
// the header it names, then GETs it back; prints what happened as JSON.
// Usage: node --experimental-websocket file_share.mjs <ws-url> <domain> <upload-jid> <filename> <text>
import { client, xml } from "@xmpp/client";
import { report } from "./report.mjs";

const [service, domain, uploadJid, filename, text] = process.argv.slice(2);
const out = { errors: [] };
const body = new TextEncoder().encode(text);

async function main() {
  const xmpp = client({ service, domain, username: "alice", password: "secret" });
  xmpp.on("error", (error) => out.errors.push(`xmpp: ${error.message || error}`));
  await xmpp.start();
  const answer = await xmpp.iqCaller.request(
    xml("iq", { type: "get", to: uploadJid },
      xml("request", { xmlns: "urn:xmpp:http:upload:0", filename, size: String(body.length), "content-type": "text/plain" })),
  );
  const slot = answer.getChild("slot", "urn:xmpp:http:upload:0");
  const put = slot.getChild("put");
  out.put_url = put.attrs.url;
  out.get_url = slot.getChild("get").attrs.url;
  const headers = { "Content-Type": "text/plain" };
  for (const header of put.getChildren("header")) headers[header.attrs.name] = header.text();
  const uploaded = await fetch(out.put_url, { method: "PUT", headers, body });
  out.put_status = uploaded.status;
  const again = await fetch(out.put_url, { method: "PUT", headers, body });
  out.put_again_status = again.status;
  const fetched = await fetch(out.get_url);
  out.get_status = fetched.status;
  out.get_body = await fetched.text();
  out.get_headers = Object.fromEntries(fetched.headers);
  await xmpp.stop();
}

report(out, main, 20000);
