"""Runs inside lab VMs: `serve` answers TCP and UDP on given ports; `probe` tries many targets at once.

    python vmprobe.py serve TCP_PORTS UDP_PORTS         e.g. serve 80,8080 5353
    python vmprobe.py probe '[["10.0.0.2","tcp",80], ["10.0.0.3","icmp",0], ...]'
prints a JSON list of booleans (reached or not), one per target, each tried for 1.5 s.
    python vmprobe.py sink PORT          prints "unix-time total-bytes" every 0.1 s for one stream
    python vmprobe.py stream IP PORT S   sends as fast as it can for S seconds, then exits
    python vmprobe.py flood IP PORT N [PPS]  sends N small UDP datagrams (at most PPS a second,
                                         else as fast as it can), prints {"sent": N, "seconds": S}
"""
import time
import concurrent.futures
import json
import socket
import subprocess
import sys
import threading

TIMEOUT = 1.5


def serve(tcp_ports, udp_ports):
    def tcp_loop(port):
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
        srv.listen(64)
        while True:
            conn, _ = srv.accept()
            try:
                conn.sendall(b"ok")
            except OSError:
                pass
            conn.close()

    def udp_loop(port):
        srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind(("0.0.0.0", port))
        while True:
            data, peer = srv.recvfrom(2048)
            srv.sendto(b"ok" + data, peer)

    threads = [threading.Thread(target=tcp_loop, args=(p,), daemon=True) for p in tcp_ports]
    threads += [threading.Thread(target=udp_loop, args=(p,), daemon=True) for p in udp_ports]
    for t in threads:
        t.start()
    print("ready", flush=True)
    threading.Event().wait()


def reach(ip, kind, port):
    if kind == "icmp":
        return subprocess.run(["ping", "-c", "1", "-W", "1.5", ip], capture_output=True).returncode == 0
    if kind == "tcp":
        try:
            with socket.create_connection((ip, port), timeout=TIMEOUT) as s:
                s.settimeout(TIMEOUT)
                return s.recv(2) == b"ok"
        except OSError:
            return False
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    try:
        s.sendto(b"x", (ip, port))
        return s.recv(16).startswith(b"ok")
    except OSError:
        return False
    finally:
        s.close()


def sink(port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    print("ready", flush=True)
    conn, _ = srv.accept()
    conn.settimeout(0.1)
    total, last = 0, 0.0
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            data = conn.recv(65536)
            if not data:
                break
            total += len(data)
        except socket.timeout:
            pass
        if time.time() - last >= 0.1:
            last = time.time()
            print(f"{last:.3f} {total}", flush=True)
    print(f"{time.time():.3f} {total}", flush=True)


def stream(ip, port, seconds):
    s = socket.create_connection((ip, port), timeout=2)
    s.settimeout(0.5)
    chunk = b"x" * 16384
    end = time.time() + seconds
    while time.time() < end:
        try:
            s.send(chunk)
        except socket.timeout:
            continue
        except OSError:
            break
    s.close()


def flood(ip, port, count, pps=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload, sent, start = b"x" * 32, 0, time.time()
    while sent < count:
        if pps and sent % 100 == 0:
            ahead = start + sent / pps - time.time()
            if ahead > 0:
                time.sleep(ahead)
        try:
            s.sendto(payload, (ip, port))
            sent += 1
        except OSError:              # ENOBUFS: the NIC's queue is full for a moment
            time.sleep(0.0005)
    print(json.dumps({"sent": sent, "seconds": round(time.time() - start, 3)}), flush=True)


def main():
    if sys.argv[1] == "flood":
        return flood(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                     int(sys.argv[5]) if len(sys.argv) > 5 else 0)
    if sys.argv[1] == "sink":
        return sink(int(sys.argv[2]))
    if sys.argv[1] == "stream":
        return stream(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    if sys.argv[1] == "serve":
        ints = lambda arg: [int(x) for x in arg.split(",") if x]
        serve(ints(sys.argv[2]), ints(sys.argv[3]) if len(sys.argv) > 3 else [])
    else:
        targets = json.loads(sys.argv[2])
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            print(json.dumps(list(pool.map(lambda t: reach(*t), targets))))


if __name__ == "__main__":
    main()
