"""A Varlink server written with the reference Python `varlink` package, serving
io.ipc.Messages (Echo, Ack, Count) like ipc-server --protocol varlink does, plus an error. The
tests call it with ipc-client; the benchmark suite measures it as the reference server.

Usage: varlink_server.py SOCKET_PATH
"""
import os
import signal
import sys
import tempfile

import varlink

IDL = """\
# The built-in server's messages, as typed calls.
interface io.ipc.Messages

# Returns the message unchanged.
method Echo(message: string) -> (message: string)

# Acknowledges a message with the server's acknowledgement text.
method Ack(message: string) -> (reply: string)

# Call with more: `count` replies, numbered from 0, each carrying the message.
method Count(count: int, message: ?string) -> (index: int, message: string)

# Always fails.
method Fail() -> ()

error Refused (why: string)
"""

directory = tempfile.mkdtemp()
with open(os.path.join(directory, "io.ipc.Messages.varlink"), "w") as f:
    f.write(IDL)

service = varlink.Service(
    vendor="tests", product="python reference", version="1", url="https://varlink.org",
    interface_dir=directory,
)


class Refused(varlink.VarlinkError):
    def __init__(self, why):
        varlink.VarlinkError.__init__(
            self, {"error": "io.ipc.Messages.Refused", "parameters": {"why": why}}
        )


@service.interface("io.ipc.Messages")
class Messages:
    def Echo(self, message):
        return {"message": message}

    def Ack(self, message):
        return {"reply": "Mensagem recebida!"}

    def Count(self, count, message=None, _more=False):
        if not _more:
            raise varlink.error.ExpectedMore(True)
        if count == 0:
            yield {"index": -1, "message": message or "", "_continues": False}
            return
        for i in range(count):
            yield {"index": i, "message": message or "", "_continues": i + 1 < count}

    def Fail(self):
        raise Refused("on purpose")


class Handler(varlink.RequestHandler):
    service = service


class Server(varlink.ThreadingServer):
    # The package's default backlog of 5 refuses connections under load; any real deployment
    # raises it, and the benchmark must not measure refusals.
    request_queue_size = 1024


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with Server("unix:" + sys.argv[1], Handler) as server:
    print("listening", flush=True)
    server.serve_forever()
