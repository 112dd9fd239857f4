"""Restarts a socket-activated server under load, as systemd's `systemctl restart` does.

Usage: restart.py SOCKET SERVER_BINARY PROTOCOL LOG [SERVER_ARGS...]
  PROTOCOL is `plain` (echo, line framing) or `varlink`.
Binds SOCKET and keeps it (as systemd does), starts the server on it (LISTEN_FDS), and runs 8
clients that loop: connect, send one request, read its reply with the connection open, close.
After a while it stops the server with SIGTERM, starts a new one on the same socket, twice,
then stops the clients. Prints one JSON line: {"ok": N, "failed": N, "errors": [...]}.
"""
import json
import os
import signal
import socket
import sys
import threading
import time

path, binary, protocol, log = sys.argv[1:5]
server_args = sys.argv[5:]

listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(128)
log_fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def start():
    pid = os.fork()
    if pid == 0:
        os.dup2(listener.fileno(), 3)
        os.set_inheritable(3, True)
        os.dup2(log_fd, 2)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())
        os.execv(binary, [binary, "--protocol", protocol, "--socket", "/nonexistent/unused.sock"] + server_args)
    return pid


if protocol == "plain":
    end = b"\n"
    request = lambda n: b"r%d\n" % n
    reply = lambda n: b"r%d" % n
else:
    end = b"\0"
    request = lambda n: json.dumps({"method": "io.ipc.Messages.Echo", "parameters": {"message": "r%d" % n}}).encode() + b"\0"
    reply = lambda n: json.dumps({"parameters": {"message": "r%d" % n}}, separators=(",", ":")).encode()

stop = threading.Event()
lock = threading.Lock()
counts = {"ok": 0, "failed": 0, "errors": []}


def client(k):
    n = 0
    while not stop.is_set():
        n += 1
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(20)
            s.connect(path)
            s.sendall(request(n))
            got = b""
            while end not in got:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the reply (%r)" % got)
                got += chunk
            s.close()
            if got.split(end)[0] != reply(n):
                raise ValueError("wrong reply %r" % got)
            with lock:
                counts["ok"] += 1
        except Exception as e:
            with lock:
                counts["failed"] += 1
                if len(counts["errors"]) < 10:
                    counts["errors"].append("client %d request %d: %r" % (k, n, e))


pid = start()
threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for _ in range(2):
    time.sleep(1.0)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        counts["errors"].append("a server exited with status %d" % status)
        counts["failed"] += 1
    pid = start()
time.sleep(1.0)
stop.set()
for t in threads:
    t.join(30)
os.kill(pid, signal.SIGTERM)
os.waitpid(pid, 0)
print(json.dumps(counts))
