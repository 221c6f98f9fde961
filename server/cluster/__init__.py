"""Cluster mode: the log is a NATS JetStream stream and every Roster process is a replica.

* ``bridge.py``   — trio (Roster) calling into asyncio (the nats-py client) and back
* ``names.py``    — the stream, subject, lease bucket and object store of one cluster name
* ``replica.py``  — the node: lease, group-committed publishes, in-order apply, step-down
* ``service.py``  — ``ClusterRoster``: ``Roster`` whose commit goes through the replica
* ``localnats.py`` — a JetStream cluster of local nats-server processes (bench, tests)
"""
