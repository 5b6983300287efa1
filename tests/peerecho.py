"""Runs in the lab's outside namespace: answers each TCP connection with the address it came from.

    python peerecho.py PORT         one line per connection: "<peer ip>\\n", then close
    python peerecho.py ask IP PORT [TIMEOUT]  connects, prints what the server said (exit 1 if
                                    no answer within TIMEOUT seconds, default 3)
"""
import socket
import sys


def serve(port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    while True:
        conn, peer = srv.accept()
        try:
            conn.sendall(f"{peer[0]}\n".encode())
        except OSError:
            pass
        conn.close()


def ask(ip: str, port: int, timeout: float = 3.0) -> int:
    try:
        with socket.create_connection((ip, port), timeout=timeout) as s:
            s.settimeout(timeout)
            data = s.recv(100)
    except OSError as exc:
        print(f"no answer: {exc}")
        return 1
    print(data.decode().strip())
    return 0 if data else 1


if __name__ == "__main__":
    if sys.argv[1] == "ask":
        sys.exit(ask(sys.argv[2], int(sys.argv[3]), *map(float, sys.argv[4:5])))
    serve(int(sys.argv[1]))
