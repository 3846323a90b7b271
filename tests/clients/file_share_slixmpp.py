# XEP-0363 as slixmpp (PyPI) does it: alice logs in over c2s, her client's
# xep_0363 plugin finds the upload service by disco, asks it for a slot and
# PUTs the file to the slot's URL; prints what happened as JSON.
# Usage: python3 file_share_slixmpp.py <host:c2s-port> <jid> <password> <file>
import asyncio
import json
import logging
import sys

import slixmpp

address, jid, password, path = sys.argv[1:5]
host, port = address.rsplit(":", 1)
out = {"errors": []}


class Uploader(slixmpp.ClientXMPP):
    def __init__(self):
        # Loopback to a test server that allows plain c2s.
        super().__init__(jid, password, plugin_config={"feature_mechanisms": {"unencrypted_scram": True}})
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.enable_plaintext = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0363")
        self.add_event_handler("session_start", self.upload)
        self.add_event_handler("failed_auth", lambda _: self.fail("authentication failed"))

    def fail(self, why):
        out["errors"].append(why)
        self.disconnect()

    async def upload(self, _event):
        try:
            out["get_url"] = await self["xep_0363"].upload_file(path, content_type="text/plain", timeout=20)
        except Exception as error:  # reported, not raised: the test reads out
            out["errors"].append(f"upload: {type(error).__name__}: {error}")
        self.disconnect()


async def main():
    client = Uploader()
    client.connect(host, int(port))
    try:
        await asyncio.wait_for(client.disconnected, 30)
    except asyncio.TimeoutError:
        out["timed_out"] = True


logging.basicConfig(level=logging.ERROR)
asyncio.run(main())
print(json.dumps(out))
