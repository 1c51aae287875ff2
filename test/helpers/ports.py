"""Free TCP ports for the tests that start torch.distributed process groups."""
import random
import socket


def free_port_pair():
    """A port P with P + 1 also free (torch.distributed's rendezvous and store), away from torchrl's default 10003."""
    for _ in range(200):
        port = random.randrange(20_000, 45_000, 10)  # spaced: runs that overlap do not pick neighbours
        try:
            for candidate in (port, port + 1):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("found no two adjacent free ports between 20000 and 45000")
