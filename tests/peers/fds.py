"""Sends file descriptors to a server with Python's standard socket.send_fds, as an
independent peer. Usage: fds.py SOCKET PROTOCOL MODE [COUNT]; prints what it saw, one
line per fact, for the test to check.

Modes:
  calls N       N calls on one connection, each carrying one descriptor; prints "answered N".
                Then waits on stdin, so the test counts the server's descriptors while the
                connection is open.
  echo N        as calls, to a server that sends descriptors: each reply must bring back the
                descriptor sent (the pipe's write end: a byte written through it is read from
                the read end); prints "echoed N" and waits on stdin. Without descriptors
                back, prints "reply I came with K descriptors".
  too-many N    a call, then one carrying N descriptors; prints each reply and "closed".
  mid-message   a call and the first half of another in one send, then the rest with a
                descriptor; prints each reply and "closed".
  die N         N connections that each send a descriptor with an unfinished message, or a
                whole call, and close without reading; prints "done".
"""

import os
import socket
import sys

path, protocol, mode = sys.argv[1], sys.argv[2], sys.argv[3]
count = int(sys.argv[4]) if len(sys.argv) > 4 else 1
end = b"\n" if protocol == "plain" else b"\0"


def call(text):
    if protocol == "plain":
        return text.encode() + b"\n"
    return (
        b'{"method":"io.ipc.Messages.Echo","parameters":{"message":"' + text.encode() + b'"}}\0'
    )


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(path)
    return s


class Replies:
    def __init__(self, s):
        self.s, self.buf, self.fds = s, b"", []

    def next(self):
        """The next reply, or None at the end of the stream. The descriptors that came with
        the reads that completed it are in self.fds (the server sends one reply at a time)."""
        while end not in self.buf:
            chunk, fds, flags, _ = socket.recv_fds(self.s, 65536, 16)
            self.fds += fds
            if flags & socket.MSG_CTRUNC:
                raise SystemExit("MSG_CTRUNC")
            if not chunk:
                return None
            self.buf += chunk
        reply, self.buf = self.buf.split(end, 1)
        return reply.decode()

    def take_fds(self):
        fds, self.fds = self.fds, []
        return fds


r, w = os.pipe()
if mode == "calls":
    s = connect()
    replies = Replies(s)
    answered = 0
    for i in range(count):
        socket.send_fds(s, [call(f"m{i}")], [r])
        reply = replies.next()
        if reply is None or f"m{i}" not in reply:
            print(f"call {i}: {reply!r}")
            break
        answered += 1
    print(f"answered {answered}", flush=True)
    sys.stdin.read()
elif mode == "echo":
    s = connect()
    replies = Replies(s)
    echoed = 0
    for i in range(count):
        socket.send_fds(s, [call(f"m{i}")], [w])
        reply = replies.next()
        fds = replies.take_fds()
        if reply is None or f"m{i}" not in reply or len(fds) != 1:
            print(f"reply {i} came with {len(fds)} descriptors: {reply!r}")
            break
        os.write(fds[0], b"x")
        os.close(fds[0])
        if os.read(r, 1) != b"x":
            print(f"reply {i}: not the pipe sent")
            break
        echoed += 1
    print(f"echoed {echoed}", flush=True)
    sys.stdin.read()
elif mode == "too-many":
    s = connect()
    replies = Replies(s)
    s.sendall(call("before"))
    print(replies.next())
    socket.send_fds(s, [call("with-fds")], [r] * count)
    print(replies.next() or "closed")
elif mode == "mid-message":
    s = connect()
    replies = Replies(s)
    whole, second = call("before"), call("split")
    half = len(second) // 2
    # One send: the server reads the first call and half of the second together.
    s.sendall(whole + second[:half])
    print(replies.next())
    socket.send_fds(s, [second[half:]], [r])
    print(replies.next() or "closed")
elif mode == "die":
    for i in range(count):
        s = connect()
        message = call(f"d{i}")
        if i % 2:
            message = message[:-1]  # unfinished: its descriptors wait for the rest
        socket.send_fds(s, [message], [r, w])
        s.close()
    print("done")
