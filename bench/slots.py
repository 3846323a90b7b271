"""Upload slots for the file-share benchmark, asked for as an XMPP client does
(slixmpp's XEP-0363 plugin, anonymous login on loopback); prints them as JSON:
[{"url": put URL, "headers": {...}, "get": GET URL}].

Usage: python3 bench/slots.py <c2s-port> <domain> <upload-jid> <count> <bytes>
"""
import asyncio
import json
import logging
import sys

import slixmpp

port, domain, upload_jid, count, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
slots = []


class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(domain, "", plugin_config={"feature_mechanisms": {"unencrypted_plain": True}})
        self.enable_starttls = self.enable_direct_tls = False
        self.enable_plaintext = True
        self.register_plugin("xep_0363")
        self.add_event_handler("session_start", self.ask)

    async def ask(self, _event):
        try:
            for start in range(0, count, 50):
                answers = await asyncio.gather(*(
                    self["xep_0363"].request_slot(upload_jid, f"file-{i}.bin", size, "application/octet-stream", timeout=30)
                    for i in range(start, min(count, start + 50))))
                for answer in answers:
                    slot = answer["http_upload_slot"]
                    slots.append({"url": slot["put"]["url"], "get": slot["get"]["url"],
                                  "headers": {h["name"]: h["value"] for h in slot["put"]["headers"]}})
        finally:
            self.disconnect()


async def main():
    client = Client()
    client.connect("127.0.0.1", int(port))
    await asyncio.wait_for(client.disconnected, 120)


logging.basicConfig(level=logging.ERROR)
asyncio.run(main())
if len(slots) != count:
    sys.exit(f"slots.py: got {len(slots)} of {count} slots")
print(json.dumps(slots))
