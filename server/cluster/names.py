"""What one cluster name stands for in NATS, and what a node tells the others about itself."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

#: the lease's key in its bucket
LEASE_KEY = "leader"


@dataclass(frozen=True)
class Names:
    """The JetStream objects of cluster ``name`` (``--cluster-name``)."""

    stream: str
    subject: str
    lease_bucket: str
    snapshot_bucket: str

    @classmethod
    def of(cls, name: str) -> Names:
        upper = name.upper().replace("-", "_")
        return cls(stream=f"ROSTER_{upper}", subject=f"roster.{name}.log",
                   lease_bucket=f"ROSTER_{upper}_LEASE", snapshot_bucket=f"ROSTER_{upper}_SNAP")


@dataclass(frozen=True)
class NodeInfo:
    """A node as the lease names it: where redirected clients should go."""

    node_id: str
    #: HTTP base URL, e.g. ``http://10.0.0.5:5001``
    url: str
    #: RESP ``host:port``, or None when the node has no RESP lane
    resp: str | None

    def encode(self) -> bytes:
        return json.dumps({"node_id": self.node_id, "url": self.url, "resp": self.resp}).encode()

    @classmethod
    def decode(cls, data: bytes) -> NodeInfo | None:
        """The lease's value, or None when it is not one (a foreign writer's key)."""
        try:
            obj = json.loads(data)
            info = cls(str(obj["node_id"]), str(obj["url"]), obj.get("resp"))
        except (ValueError, TypeError, KeyError):
            return None
        return info if info.resp is None or isinstance(info.resp, str) else None


def advertised(node_id: str | None, advertise_url: str | None, http_addr: str,
               resp_addr: str | None) -> NodeInfo:
    """This node's ``NodeInfo`` from its settings and the addresses it actually bound.

    ``http_addr`` is hypercorn's ``http://host:port``; a wildcard host (``0.0.0.0``) is no
    address to send anyone to, so without ``--advertise-url`` it is replaced by the loopback.
    The RESP lane is advertised on the advertised URL's host with its own port.
    """
    url = (advertise_url or _concrete(http_addr)).rstrip("/")
    host = urlsplit(url).hostname or "127.0.0.1"
    resp = None
    if resp_addr is not None:
        port = resp_addr.rsplit(":", 1)[1]
        resp = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = urlsplit(_concrete(http_addr))
    return NodeInfo(node_id or f"{bound.hostname}:{bound.port}", url, resp)


def _concrete(addr: str) -> str:
    for wildcard, loopback in (("0.0.0.0", "127.0.0.1"), ("[::]", "[::1]")):
        addr = addr.replace(f"//{wildcard}:", f"//{loopback}:")
    return addr
