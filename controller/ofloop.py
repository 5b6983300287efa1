"""One selector loop serves every OpenFlow connection: accept, TLS handshakes with a deadline, reads, writes and echoes, with no thread per switch.

os-ken's Datapath runs three threads per switch (receive, send, echo). With its native hub
those are OS threads: 5,000 switches are 15,000 threads fighting for the GIL on two cores
(measured: 1,500 emulated hosts put the load average at 133 and a port add's p99 at 8.8 s).
Here one thread owns every socket (selectors: epoll on Linux); a `LoopDatapath` is os-ken's
Datapath with its I/O replaced, so os-ken's parser, its OFPHandler (hello, features, echo) and
the event dispatch to weft's app are unchanged: messages are parsed on the loop and handed to
the apps' event queues exactly as os-ken's receive loop does. A connection's writes go into its
own buffer (any thread may write; the loop is woken) and leave when the socket takes them.

asyncio was measured out for this: its streams cost a task and a future per read, and TLS
through its SSL protocol copies every record once more; a plain selector over non-blocking
(TLS) sockets is what the per-message cost asks for, and it is small.
"""
from __future__ import annotations

import collections
import logging
import os
import selectors
import socket
import ssl
import struct
import threading
import time

from os_ken.controller import ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import DEAD_DISPATCHER
from os_ken.ofproto import ofproto_common, ofproto_parser

LOG = logging.getLogger(__name__)
READ_CHUNK = 256 * 1024         # bytes read per recv call
MAX_READS = 16                  # recv calls per connection per round (fairness); TLS reads on
SWEEP = 0.5                     # seconds between checks of echo timers and handshake deadlines
# a sender writes at most this much itself (_write_now): a port-up's bundle is ~1.3 KB; a whole
# host's flows (a reconnect, a cold start) are left to the loop, whose TLS encryption then runs
# beside the engine's next host instead of in the engine's time slice
DIRECT_WRITE_MAX = 64 * 1024
HEADER = ofproto_common.OFP_HEADER_SIZE
OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 2, 3      # the same in every OpenFlow version
PACK_HEADER = struct.Struct("!BBHI")


class LoopDatapath(Datapath):
    """os-ken's Datapath whose socket the loop owns: `send` buffers and wakes the loop, `close`
    hangs up (DEAD_DISPATCHER at once), and the loop parses what arrives."""

    def __init__(self, sock, address, loop: "OpenFlowLoop"):
        super().__init__(sock, address)
        sock.setblocking(False)
        self.loop = loop
        self._send_q_sem = None          # the driver then calls send(), which never blocks
        self._out: collections.deque = collections.deque()
        self.send_q = self._out          # None once closed (what the driver checks)
        self._out_lock = threading.Lock()
        # the socket itself: the loop reads and writes it, a sender may write it (_write_now);
        # an SSL object must not be used by two threads at once
        self._io_lock = threading.Lock()
        self._close_after_send = False
        self._closing = False
        self._posted = False             # handed to the loop, not yet written out in full
        self._rbuf = bytearray()
        self._echo_at = 0.0              # the first echo goes out with the first sweep
        self._heard = False              # anything received since the last echo check

    # ---- what other threads call -------------------------------------------------------------
    def send(self, buf, close_socket=False) -> bool:
        with self._out_lock:
            if self.send_q is None or self._closing:
                return False
            if buf:
                self._out.append(bytes(buf))
            if close_socket:
                self._close_after_send = True
            wake, self._posted = not self._posted, True
        if wake and (close_socket or len(buf) > DIRECT_WRITE_MAX or not self._write_now()):
            self.loop.want_write(self)
        return True

    def _write_now(self) -> bool:
        """From a thread other than the loop's, write at once what the socket takes: a bundle
        leaves when the engine has it, not one thread hand-off later (the loop's wake-up
        waited 0.3-1.7 ms for the GIL behind the engine on a port-up, measured). True when
        everything went out; otherwise (the loop's own thread, another writer at it, the socket
        full, the connection over) the loop is posted and takes the rest."""
        if threading.current_thread() is self.loop._thread or not self._io_lock.acquire(blocking=False):
            return False
        try:
            return self._flush_locked() is True
        finally:
            self._io_lock.release()

    def close(self) -> None:
        """Hang up: DEAD_DISPATCHER now, the socket closed by the loop, nothing more written."""
        self.set_state(DEAD_DISPATCHER)
        with self._out_lock:
            self._closing = True
        self.loop.want_close(self)

    # ---- the loop's side ------------------------------------------------------------------------
    def _flush(self) -> bool | None:
        """Write what the socket takes. True: all written; False: more to write (wait for
        writability); None: the connection is over."""
        with self._io_lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool | None:
        while True:
            with self._out_lock:
                if not self._out:
                    self._posted = False     # the next send posts again
                    return None if self._close_after_send else True
                if len(self._out) > 1:
                    joined = b"".join(self._out)
                    self._out.clear()
                    self._out.append(joined)
                buf = self._out[0]
            try:
                sent = self.socket.send(buf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return False
            except OSError:
                return None
            with self._out_lock:
                if sent >= len(buf):
                    self._out.popleft()
                else:
                    self._out[0] = buf[sent:]
                    return False

    def _read(self) -> bool:
        """Read what is there and dispatch every whole message; False once the peer is gone."""
        for _ in range(MAX_READS):
            try:
                with self._io_lock:
                    data = self.socket.recv(READ_CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return True
            except OSError:
                return False
            if not data:
                return False
            self._heard = True
            self._rbuf += data
            self._dispatch()
            if self.state == DEAD_DISPATCHER:
                return False
        # more may be waiting; with TLS it can sit decrypted in the SSL object, where the
        # selector cannot see it: the loop comes back to this connection in the next round
        self.loop.read_again(self)
        return True

    def _dispatch(self) -> None:
        """os-ken's receive loop body: whole messages parsed and handed to the apps."""
        buf = self._rbuf
        offset, size = 0, len(buf)
        brick = self.ofp_brick
        while size - offset >= HEADER:
            version, msg_type, msg_len, xid = ofproto_parser.header(buf[offset:offset + HEADER])
            if msg_len < HEADER:
                msg_len = HEADER
            if size - offset < msg_len:
                break
            if msg_type == OFPT_ECHO_REPLY or msg_type == OFPT_ECHO_REQUEST:
                # answered here, without os-ken's parser and event objects: 5,000 switches
                # send and answer an echo every interval (what os-ken's OFPHandler would do)
                if msg_type == OFPT_ECHO_REPLY:
                    self.acknowledge_echo_reply(xid)
                else:
                    self.send(PACK_HEADER.pack(version, OFPT_ECHO_REPLY, msg_len, xid)
                              + bytes(buf[offset + HEADER:offset + msg_len]))
                offset += msg_len
                continue
            raw = self.loop.raw_handlers.get(msg_type)
            if raw is not None and raw(self, buf[offset:offset + msg_len]):
                offset += msg_len
                continue
            msg = ofproto_parser.msg(self, version, msg_type, msg_len, xid,
                                     buf[offset:offset + msg_len])
            offset += msg_len
            if msg and brick is not None:
                ev = ofp_event.ofp_msg_to_ev(msg)
                brick.send_event_to_observers(ev, self.state)
                for handler in brick.get_handlers(ev):
                    if self.state in handler.callers[ev.__class__].dispatchers:
                        handler(ev)
        if offset:
            del buf[:offset]

    def _echo(self, now: float) -> None:
        """Every echo interval: a connection heard from meanwhile is alive (no echo needed, as
        Open vSwitch's own inactivity probe); a silent one is sent an echo request, and closed
        once more than the maximum are unanswered."""
        if now < self._echo_at or not self.max_unreplied_echo_requests:
            return
        self._echo_at = now + self.echo_request_interval
        if self._heard:
            self._heard = False
            self.unreplied_echo_requests.clear()
            return
        if len(self.unreplied_echo_requests) > self.max_unreplied_echo_requests:
            try:
                events = self.loop.sel.get_key(self.socket).events
            except (KeyError, ValueError):
                events = None
            LOG.info("switch %s at %s answered no echo for %.0f s: closed (%d bytes unsent, "
                     "posted %s, waiting for %s)", _dpid(self), self.address,
                     self.echo_request_interval * len(self.unreplied_echo_requests),
                     sum(len(b) for b in self._out), self._posted, events)
            self.close()
            return
        self.xid = (self.xid + 1) & self.ofproto.MAX_XID
        self.unreplied_echo_requests.append(self.xid)
        self.send(PACK_HEADER.pack(self.ofproto.OFP_VERSION, OFPT_ECHO_REQUEST, HEADER, self.xid))


def _dpid(datapath) -> str:
    return "unknown" if datapath.id is None else f"{datapath.id:016x}"


class _Handshake:
    """A TLS handshake under way on a non-blocking socket, with its deadline."""

    def __init__(self, sock, address, deadline: float):
        self.sock, self.address, self.deadline = sock, address, deadline


class OpenFlowLoop:
    """The loop: `run()` (in the listener's thread) serves the listening socket and every
    connection. `context`: TLS with a client certificate required; `handshake_timeout`,
    `max_handshakes`: a peer's handshake deadline and how many may be under way at once;
    `on_refused(address, reason, detail)` and `handshake_error(exc)` report failed ones."""

    def __init__(self, listen_sock, context, on_refused, handshake_error, refused_reason: str,
                 handshake_timeout: float, max_handshakes: int, raw_handlers: dict | None = None):
        self.listen_sock = listen_sock
        # {message type: handler(datapath, message bytes) -> True if it took the message}: read
        # on this loop before os-ken's parser, which gets whatever a handler leaves
        self.raw_handlers = raw_handlers or {}
        self.context = context
        self.on_refused = on_refused
        self.handshake_error = handshake_error
        self.refused_reason = refused_reason
        self.handshake_timeout = handshake_timeout
        self.max_handshakes = max_handshakes
        self.sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._to_write: set = set()         # datapaths with new bytes (from any thread)
        self._to_close: set = set()
        self._again: set = set()            # datapaths to read again without waiting
        self._woken = False
        self._thread = None
        self.handshakes: dict[int, _Handshake] = {}
        self.datapaths: dict[int, LoopDatapath] = {}

    # ---- from any thread ----------------------------------------------------------------------
    def want_write(self, dp: LoopDatapath) -> None:
        self._post(dp, close=False)

    def want_close(self, dp: LoopDatapath) -> None:
        self._post(dp, close=True)

    def read_again(self, dp: LoopDatapath) -> None:
        self._again.add(dp)                  # only ever called on the loop

    def _post(self, dp, close: bool) -> None:
        with self._lock:
            # the bucket is looked up under the lock: the loop swaps them for new ones
            (self._to_close if close else self._to_write).add(dp)
            if self._woken or threading.current_thread() is self._thread:
                return                       # the loop looks at the buckets before it waits
            self._woken = True
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    # ---- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        self._thread = threading.current_thread()
        self.listen_sock.setblocking(False)
        self.sel.register(self.listen_sock, selectors.EVENT_READ, self._accept)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        next_sweep = time.monotonic()
        while True:
            try:
                next_sweep = self._round(next_sweep)
            except Exception:            # never die: every switch would go unserved
                LOG.exception("OpenFlow loop: a round failed")
                time.sleep(0.01)

    def _round(self, next_sweep: float) -> float:
        timeout = 0 if self._again else max(0.0, next_sweep - time.monotonic())
        for key, mask in self.sel.select(timeout):
            try:
                key.data(key.fileobj, mask)
            except Exception:
                LOG.exception("OpenFlow loop: handling %s failed", key.fileobj)
        again, self._again = self._again, set()
        for dp in again:
            if id(dp) in self.datapaths:
                self._readable(dp)
        self._take_posts()
        now = time.monotonic()
        if now >= next_sweep:
            self._sweep(now)
            next_sweep = now + SWEEP
        return next_sweep

    def _drain_wake(self, fd, mask) -> None:
        # empty the pipe, then clear the flag: a post in between finds the flag set and writes
        # nothing, and its bucket is taken after this round's callbacks (_take_posts); the other
        # order could swallow a later post's byte and leave the flag set with the pipe empty
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._woken = False

    def _take_posts(self) -> None:
        with self._lock:
            writes, self._to_write = self._to_write, set()
            closes, self._to_close = self._to_close, set()
        for dp in writes:
            if id(dp) in self.datapaths and dp not in closes:
                try:
                    self._write(dp)
                except Exception:
                    LOG.exception("OpenFlow loop: writing to %s failed", dp.address)
                    self._drop(dp)
        for dp in closes:
            self._drop(dp)

    def _sweep(self, now: float) -> None:
        for hs in [h for h in self.handshakes.values() if h.deadline <= now]:
            self._handshake_failed(hs, socket.timeout("handshake deadline"))
        for dp in list(self.datapaths.values()):
            try:
                dp._echo(now)
            except Exception:
                LOG.exception("OpenFlow loop: echo to %s failed", dp.address)
        self._take_posts()

    # ---- accept and TLS -------------------------------------------------------------------------
    def _accept(self, listen_sock, mask) -> None:
        for _ in range(64):
            try:
                sock, address = listen_sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                LOG.error("OpenFlow listener: accept failed: %s", exc)
                return
            if self.context is None:
                self._serve(sock, address)
            elif len(self.handshakes) >= self.max_handshakes:
                sock.close()
                self.on_refused(address, self.refused_reason,
                                f"{self.max_handshakes} TLS handshakes already under way; closed at once")
            else:
                try:
                    sock.setblocking(False)
                    tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (ssl.SSLError, OSError) as exc:
                    sock.close()
                    self.on_refused(address, self.refused_reason, self.handshake_error(exc))
                    continue
                self.handshakes[tls.fileno()] = _Handshake(tls, address,
                                                           time.monotonic() + self.handshake_timeout)
                self.sel.register(tls, selectors.EVENT_READ, self._handshake_step)
                self._handshake_step(tls, selectors.EVENT_READ)

    def _handshake_step(self, tls, mask) -> None:
        hs = self.handshakes.get(tls.fileno())
        if hs is None:
            return
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            self.sel.modify(tls, selectors.EVENT_READ, self._handshake_step)
            return
        except ssl.SSLWantWriteError:
            self.sel.modify(tls, selectors.EVENT_WRITE, self._handshake_step)
            return
        except (ssl.SSLError, OSError) as exc:
            self._handshake_failed(hs, exc)
            return
        del self.handshakes[tls.fileno()]
        self.sel.unregister(tls)
        self._serve(tls, hs.address)

    def _handshake_failed(self, hs: _Handshake, exc: BaseException) -> None:
        self.handshakes.pop(hs.sock.fileno(), None)
        try:
            self.sel.unregister(hs.sock)
        except (KeyError, ValueError):
            pass
        try:
            hs.sock.close()
        except OSError:
            pass
        self.on_refused(hs.address, self.refused_reason, self.handshake_error(exc))

    # ---- connections ----------------------------------------------------------------------------
    def _serve(self, sock, address) -> None:
        try:
            dp = LoopDatapath(sock, address, self)
        except Exception:
            LOG.exception("switch connection from %s could not start", address)
            sock.close()
            return
        self.datapaths[id(dp)] = dp
        self.sel.register(sock, selectors.EVENT_READ, lambda s, m, dp=dp: self._event(dp, m))
        dp.send_msg(dp.ofproto_parser.OFPHello(dp))
        self._write(dp)

    def _event(self, dp: LoopDatapath, mask) -> None:
        if id(dp) not in self.datapaths:
            return
        if mask & selectors.EVENT_WRITE:
            self._write(dp)
        if mask & selectors.EVENT_READ and id(dp) in self.datapaths:
            self._readable(dp)

    def _readable(self, dp: LoopDatapath) -> None:
        try:
            alive = dp._read()
        except Exception:
            LOG.exception("switch connection from %s (datapath %s) failed", dp.address, _dpid(dp))
            alive = False
        if not alive:
            self._drop(dp)
        else:
            self._write(dp)                  # what the handlers answered (echo, handshake)

    def _write(self, dp: LoopDatapath) -> None:
        if id(dp) not in self.datapaths:
            return
        done = dp._flush()
        if done is None:
            self._drop(dp)
            return
        events = selectors.EVENT_READ | (0 if done else selectors.EVENT_WRITE)
        key = self.sel.get_key(dp.socket)
        if key.events != events:
            self.sel.modify(dp.socket, events, key.data)

    def _drop(self, dp: LoopDatapath) -> None:
        """The connection is over: DEAD_DISPATCHER (the engine hears of it now), socket closed."""
        if self.datapaths.pop(id(dp), None) is None:
            return
        self._again.discard(dp)
        try:
            self.sel.unregister(dp.socket)
        except (KeyError, ValueError):
            pass
        with dp._out_lock:
            dp.send_q = None
            dp._out.clear()
        dp.set_state(DEAD_DISPATCHER)
        dp.is_active = False
        with dp._io_lock:                    # not under a sender writing at once (_write_now)
            try:
                dp.socket.close()
            except OSError:
                pass
