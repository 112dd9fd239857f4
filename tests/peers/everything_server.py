"""A Varlink server written with the reference Python `varlink` package, serving
org.example.everything (crates/ipc-varlink-typed-tests/idl/): the tests call it with the typed
clients generated from the same description.

Usage: everything_server.py IDL_DIRECTORY SOCKET_PATH
"""
import signal
import sys

import varlink

service = varlink.Service(
    vendor="tests", product="python everything", version="1", url="https://varlink.org",
    interface_dir=sys.argv[1],
)


@service.interface("org.example.everything")
class Everything:
    def Reflect(self, all, node=None):
        return {"all": all, "node": node}

    def Walk(self, root, _more=False):
        if not _more:
            raise varlink.error.ExpectedMore(True)
        stack = [(root, 0)]
        order = []
        while stack:
            node, depth = stack.pop()
            order.append((node["label"], depth))
            for child in reversed(node.get("children", [])):
                stack.append((child, depth + 1))
        for i, (label, depth) in enumerate(order):
            yield {"label": label, "depth": depth, "_continues": i + 1 < len(order)}

    def Maybe(self, refuse, why=None):
        if refuse:
            parameters = {"code": 7}
            if why is not None:
                parameters["why"] = why
            raise varlink.VarlinkError(
                {"error": "org.example.everything.Refused", "parameters": parameters}
            )
        return {}

    def Match(self, ref):
        return {"loop": ref}

    def Nothing(self):
        return {}


class Handler(varlink.RequestHandler):
    service = service


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with varlink.ThreadingServer("unix:" + sys.argv[2], Handler) as server:
    server.serve_forever()
