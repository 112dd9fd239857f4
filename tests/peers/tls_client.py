"""A TLS client written with Python's standard `ssl` module (OpenSSL), for the interop tests.

    tls_client.py HOST PORT CA CERT KEY plain|varlink COUNT

Sends COUNT messages pipelined in one write (lines, or Varlink calls of
io.ipc.Messages.Echo ended by NUL), keeps the connection open while it reads every reply,
checks each against its message, and prints `ok COUNT TLSVERSION`. Exits 1 on a wrong or
missing reply.
"""
import json
import socket
import ssl
import sys

host, port, ca, cert, key, protocol, count = sys.argv[1:8]
port, count = int(port), int(count)
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
raw = socket.create_connection((host, port), timeout=20)
conn = context.wrap_socket(raw, server_hostname=host)
messages = [f"message {i} {'x' * (i % 300)}" for i in range(count)]
if protocol == "plain":
    out = b"".join(m.encode() + b"\n" for m in messages)
    end = b"\n"
else:
    out = b"".join(
        json.dumps({"method": "io.ipc.Messages.Echo", "parameters": {"message": m}}).encode()
        + b"\0"
        for m in messages
    )
    end = b"\0"
conn.sendall(out)
buf = b""
replies = []
while len(replies) < count:
    chunk = conn.recv(65536)
    if not chunk:
        sys.exit(f"the server closed after {len(replies)} replies")
    buf += chunk
    *done, buf = buf.split(end)
    replies.extend(done)
for i, (message, reply) in enumerate(zip(messages, replies)):
    got = reply.decode() if protocol == "plain" else json.loads(reply)["parameters"]["message"]
    if got != message:
        sys.exit(f"reply {i}: {got!r} for {message!r}")
print("ok", count, conn.version())
