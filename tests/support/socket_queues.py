"""Bytes in the kernel's TCP queues between two sockets on 127.0.0.1, as Linux reports them.

`/proc/net/tcp` lists every IPv4 TCP socket of the machine with its local and remote address and
two queue sizes: `tx_queue`, the bytes sent and not yet acknowledged by the peer, and `rx_queue`,
the bytes received and not yet read by the socket's process. On loopback a port names one end of
a connection, so (local port, remote port) is the key. What one end has sent and the other's
process has not read yet is the sender's send queue plus the receiver's receive queue: neither
process holds those bytes; the kernel does. Linux only (the suite runs there).
"""

from __future__ import annotations

from pathlib import Path

Queues = dict[tuple[int, int], tuple[int, int]]  # (local, remote port) -> (send, receive queue)


def tcp_queues() -> Queues:
    """(local port, remote port) -> (send queue, receive queue) of every IPv4 TCP socket."""
    queues: Queues = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        send, receive = (int(size, 16) for size in fields[4].split(":"))
        queues[(local, remote)] = (send, receive)
    return queues


def in_kernel(sender: int, receiver: int, queues: Queues | None = None) -> int:
    """Bytes the socket on port `sender` sent to its peer on port `receiver` that the peer's
    process has not read yet (`queues`: one reading of `tcp_queues`, to add several up)."""
    queues = tcp_queues() if queues is None else queues
    return queues[(sender, receiver)][0] + queues[(receiver, sender)][1]
