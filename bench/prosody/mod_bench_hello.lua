-- The trivial Prosody HTTP module canto's hello is compared with: the same
-- bytes as http_hello for Host: localhost.
module:depends("http");

module:provides("http", {
	route = {
		["GET /*"] = function(event)
			event.response.headers.content_type = "text/plain; charset=utf-8";
			return "hello from localhost\n";
		end;
	};
});
