"""A pipelining client that keeps its connection open while it reads its replies.

Usage: pipeline.py SOCKET PROTOCOL COUNT
  PROTOCOL is `line` (plain protocol, line framing) or `varlink` (io.ipc.Messages.Echo calls).
Sends COUNT requests in one write, never shuts down its sending side, and reads until every
reply has come (or 20 s pass); prints `ok COUNT` if every reply came, in order.
"""
import json
import socket
import sys
import time

path, protocol, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if protocol == "line":
    end = b"\n"
    requests = [b"m%d" % i for i in range(count)]
    expected = requests
else:
    end = b"\0"
    requests = [
        json.dumps({"method": "io.ipc.Messages.Echo", "parameters": {"message": "m%d" % i}}).encode()
        for i in range(count)
    ]
    expected = [json.dumps({"parameters": {"message": "m%d" % i}}, separators=(",", ":")).encode() for i in range(count)]

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(path)
s.sendall(b"".join(r + end for r in requests))
deadline = time.monotonic() + 20
got = b""
while got.count(end) < count and time.monotonic() < deadline:
    try:
        chunk = s.recv(65536)
    except socket.timeout:
        break
    if not chunk:
        break
    got += chunk
replies = got.split(end)[:-1]
if replies != expected:
    print("got %d of %d replies; first difference at %s" % (
        len(replies), count,
        next((i for i, (a, b) in enumerate(zip(replies, expected)) if a != b), len(replies))))
    sys.exit(1)
print("ok %d" % count)
