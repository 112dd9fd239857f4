"""A client of ipc-server --protocol varlink written with the reference Python `varlink`
package: it learns the interface from the server (GetInterfaceDescription, parsed by the
package's own IDL parser) and makes typed calls, a call that gets an error reply, a `more`
call and a one-way call. It prints one JSON object of what it saw; the Rust test checks it.

Usage: varlink_client.py SOCKET_PATH
"""
import json
import sys

import varlink

seen = {}
with varlink.Client(address="unix:" + sys.argv[1]) as client:
    with client.open_connection() as conn:
        # org.varlink.service, as the package itself asks it.
        info = client.get_interfaces(socket_connection=conn)
        seen["interfaces"] = sorted(info)
    with client.open("io.ipc.Messages") as messages:
        seen["echo"] = messages.Echo("olá")
        seen["ack"] = messages.Ack("x")
        seen["count"] = [r["index"] for r in messages.Count(5, "m", _more=True)]
        messages.Echo("one way", _oneway=True)
        # The one-way call got no reply: this reply is the next call's own.
        seen["after_oneway"] = messages.Echo("after")
        try:
            messages.Count(2)
            seen["expected_more"] = None
        except varlink.VarlinkError as e:
            seen["expected_more"] = e.error()
    with client.open("io.ipc.Server") as server:
        seen["stats_calls"] = server.Stats()["calls"] > 0
    try:
        client.open("org.example.none")
        seen["missing"] = None
    except varlink.VarlinkError as e:
        seen["missing"] = e.error()
print(json.dumps(seen, sort_keys=True))
