"""A client of ipc-server --protocol varlink written with the `asyncvarlink` package: pipelined
calls on one connection (asyncio sends them all before the first reply), an error reply, a
`more` call and a one-way call. It prints one JSON object of what it saw; the Rust test checks
it.

Usage: asyncvarlink_client.py SOCKET_PATH
"""
import asyncio
import json
import sys

from asyncvarlink import (
    VarlinkClientProtocol,
    VarlinkMethodCall,
    connect_unix_varlink,
)


def message(reply):
    # The protocol's calls give a (VarlinkMethodReply, fds) pair.
    return reply[0] if isinstance(reply, tuple) else reply


def parameters(reply):
    return message(reply).parameters


async def main(path):
    transport, proto = await connect_unix_varlink(VarlinkClientProtocol, path)
    seen = {}
    calls = [
        proto.call(VarlinkMethodCall("io.ipc.Messages.Echo", {"message": f"m{i}"}))
        for i in range(50)
    ]
    replies = await asyncio.gather(*calls)
    seen["pipelined"] = [parameters(r)["message"] for r in replies] == [f"m{i}" for i in range(50)]
    # At this level an error reply is a reply whose `error` is set.
    failed = await proto.call(VarlinkMethodCall("io.ipc.Messages.Nope", {}))
    seen["error"] = message(failed).error
    seen["error_parameters"] = parameters(failed)
    more = VarlinkMethodCall("io.ipc.Messages.Count", {"count": 4, "message": "s"}, more=True)
    seen["count"] = [parameters(r)["index"] async for r in proto.call_more(more)]
    await proto.call(VarlinkMethodCall("io.ipc.Messages.Echo", {"message": "x"}, oneway=True))
    after = await proto.call(VarlinkMethodCall("io.ipc.Messages.Echo", {"message": "after"}))
    seen["after_oneway"] = parameters(after)["message"]
    transport.close()
    print(json.dumps(seen, sort_keys=True))


asyncio.run(main(sys.argv[1]))
