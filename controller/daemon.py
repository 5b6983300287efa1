"""weftd: the controller daemon — northbound store, southbound host watchers, OpenFlow, and the API."""
from __future__ import annotations

import argparse
import collections
import gc
import logging
import os
import signal
import sys
import threading
import warnings

from topology.errors import WeftError

LOG = logging.getLogger("weftd")
COLD_SETTLE = 5.0       # s: a cold start holds first bundles until the hosts have reported (engine)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="weftd", description=__doc__, allow_abbrev=False)
    ap.add_argument("--config", metavar="FILE",
                    help="read settings from this TOML file (e.g. /etc/weft/weftd.toml): each key is a "
                         "flag's name without its dashes; flags given here override it")
    ap.add_argument("--check-config", action="store_true",
                    help="check the configuration (file, flags, TLS files, token file) and exit")
    ap.add_argument("--run-dir", default="/run/weftd", help="state directory (local store, pid file)")
    ap.add_argument("--nb", help="northbound OVSDB remote, or the members of its Raft cluster comma-separated "
                                 "(unix:A,unix:B,unix:C or ssl:IP:PORT,...; weftd follows the leader); "
                                 "default: a local ovsdb-server in --run-dir. ssl: uses --ssl-key/cert/ca; "
                                 "tcp: only with --insecure-nb")
    ap.add_argument("--insecure-nb", action="store_true",
                    help="allow tcp: northbound remotes (unauthenticated, unencrypted)")
    ap.add_argument("--of-listen", default="0.0.0.0:6653", metavar="IP:PORT",
                    help="OpenFlow listener (default 0.0.0.0:6653)")
    ap.add_argument("--controller-target", action="append", default=[], metavar="TARGET",
                    help="controller target written into each host's br-int "
                         "(default ssl:<of-listen>, tcp: with --insecure-openflow); repeat for "
                         "several replicas")
    ap.add_argument("--ssl-key", metavar="FILE", help="weftd's private key (PEM), for OpenFlow and OVSDB")
    ap.add_argument("--ssl-cert", metavar="FILE", help="weftd's certificate (PEM)")
    ap.add_argument("--ssl-ca", metavar="FILE",
                    help="the CA certificate (PEM) that signs the switches' and hosts' certificates; "
                         "a switch is admitted only when its certificate names the host that owns "
                         "its datapath id")
    ap.add_argument("--insecure-openflow", action="store_true",
                    help="listen for OpenFlow over plain TCP: any process that reaches the port and "
                         "knows a datapath id can claim a host (its flows, its DHCP)")
    ap.add_argument("--api-socket", metavar="PATH",
                    help="serve the API on this unix socket, mode 0660, group `weft` when it exists "
                         "(default: <run-dir>/weftd.sock unless --api-listen is given)")
    ap.add_argument("--api-listen", metavar="IP:PORT",
                    help="also serve the API on TCP: needs --api-token-file, and TLS "
                         "(--api-tls-cert/--api-tls-key) unless --api-no-tls; `fd:N` serves a "
                         "listening TCP socket handed over as file descriptor N (the lab's, on the "
                         "machine's loopback while weftd lives in the management namespace)")
    ap.add_argument("--api-token-file", metavar="FILE",
                    help="the bearer token every TCP request must carry (a file readable by its "
                         "owner only; clients: WEFT_TOKEN)")
    ap.add_argument("--api-tls-cert", metavar="PEM", help="TLS certificate of the TCP API")
    ap.add_argument("--api-tls-key", metavar="PEM", help="TLS private key of the TCP API")
    ap.add_argument("--api-no-tls", action="store_true",
                    help="serve the TCP API without TLS (tests on loopback; the token still applies)")
    ap.add_argument("--tunnel", choices=["vxlan", "geneve"], default="vxlan")
    ap.add_argument("--underlay-mtu", type=_underlay_mtu, default=1500, metavar="BYTES",
                    help="MTU of the hypervisors' tunnel network (default 1500); VMs are given this "
                         "less the encapsulation (DHCP option 26): 1450 with VXLAN on 1500, 8950 on 9000")
    ap.add_argument("--datapath-type", help="set br-int's datapath_type (the lab uses netdev)")
    ap.add_argument("--collector-ip", metavar="IP",
                    help="run weft's sFlow/NetFlow/IPFIX collectors on this address (ports 6343, "
                         "2055, 4739) and point every host's exporters at it")
    ap.add_argument("--sflow-agent", metavar="IFACE",
                    help="the interface whose address the hosts' sFlow agent uses (the lab: mgmt0)")
    ap.add_argument("--export-dir", help="rotating JSON Lines / CSV traffic exports (default: "
                                         "<run-dir>/exports when collecting)")
    ap.add_argument("--history-dir", help="flow history (Parquet, by hour) and NetFlow/IPFIX templates "
                                          "kept across restarts (default: <run-dir>/history when collecting)")
    ap.add_argument("--ha", action="store_true",
                    help="one of several replicas sharing --nb: active while it holds the northbound "
                         "lock weftd_active, else a hot standby (OpenFlow slave, no host configuration)")
    ap.add_argument("--name", help="this replica's name in `weft cluster status` (default weftd)")
    ap.add_argument("--peer", action="append", default=[], metavar="NAME=ENDPOINT",
                    help="another replica's API (unix:PATH or http://IP:PORT), for cluster status")
    ap.add_argument("--pidfile")
    ap.add_argument("--log-file")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def parse_args(argv):
    from controller import config
    ap = build_parser()
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = config.parse(ap, argv, pre.parse_known_args(argv)[0].config)
    except config.ConfigError as exc:
        sys.stderr.write(f"weftd: error: {exc}\n")
        sys.exit(2)
    if not args.api_socket and not args.api_listen:
        args.api_socket = os.path.join(args.run_dir, "weftd.sock")
    problem = _api_tcp_problem(args)
    if problem:
        ap.error(problem)
    problem = _nb_problem(args)
    if problem:
        ap.error(problem)
    if args.ha and not args.nb:
        ap.error("--ha needs --nb: the replicas share a northbound database (its Raft cluster)")
    for peer in args.peer:
        if "=" not in peer:
            ap.error(f"--peer {peer!r}: expected NAME=ENDPOINT")
    return args


def _nb_problem(args) -> str | None:
    """Why the northbound remotes are not safe to use, or None: each must be unix: (local, its
    file mode guards it) or ssl: (weftd's certificate, the server's checked against --ssl-ca);
    tcp: only when --insecure-nb says so."""
    if not args.nb:
        return "--insecure-nb is for a tcp: --nb" if args.insecure_nb else None
    for remote in args.nb.split(","):
        kind = remote.partition(":")[0]
        if kind == "unix":
            continue
        if kind == "ssl":
            if not (args.ssl_key and args.ssl_cert and args.ssl_ca):
                return f"--nb {remote} needs --ssl-key, --ssl-cert and --ssl-ca (weftd's certificate and the CA)"
            continue
        if kind == "tcp":
            if args.insecure_nb:
                continue
            return (f"--nb {remote} is not TLS: use ssl:IP:PORT (or unix:PATH), or allow plain TCP "
                    f"explicitly with --insecure-nb")
        return f"--nb {remote!r}: expected unix:PATH, ssl:IP:PORT or tcp:IP:PORT"
    return None


def _api_tcp_problem(args) -> str | None:
    """What is missing for the TCP API to be safe, or None."""
    if not args.api_listen:
        if args.api_token_file or args.api_tls_cert or args.api_tls_key or args.api_no_tls:
            return "--api-token-file, --api-tls-* and --api-no-tls are for --api-listen"
        return None
    if not args.api_token_file:
        return "--api-listen needs --api-token-file: the TCP API never serves without a token"
    if args.api_no_tls:
        if args.api_tls_cert or args.api_tls_key:
            return "--api-no-tls and --api-tls-cert/--api-tls-key contradict each other"
    elif not (args.api_tls_cert and args.api_tls_key):
        return "--api-listen needs --api-tls-cert and --api-tls-key (or --api-no-tls on a trusted loopback)"
    return None


def read_token(path: str) -> str:
    """The API token from `path`: refused if others can read the file, or it is too short."""
    try:
        st = os.stat(path)
        with open(path) as f:
            token = f.read().strip()
    except OSError as exc:
        raise WeftError(f"cannot read --api-token-file {path}: {exc.strerror}") from None
    if st.st_mode & 0o077:
        raise WeftError(f"--api-token-file {path} is readable by others (mode {st.st_mode & 0o777:o}): "
                        f"chmod 600 it")
    if len(token) < 16:
        raise WeftError(f"--api-token-file {path}: the token must be at least 16 characters")
    return token


def check_bind(host: str, port: int, what: str) -> None:
    """Fail now, loudly, when a listener cannot be had (another weftd holds the port): a
    weftd without its listener must not start and take over hosts."""
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise WeftError(f"cannot listen for {what} on {host}:{port}: {exc.strerror} "
                        f"(another weftd running? choose another address)", 500) from None
    finally:
        sock.close()


def _underlay_mtu(text: str) -> int:
    import argparse

    from flows.pipeline import check_underlay_mtu
    try:
        return check_underlay_mtu(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc) if text.strip().lstrip("-").isdigit()
                                         else f"not an integer: {text!r}") from None


def _split_hostport(value: str, what: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise WeftError(f"invalid {what} {value!r}: expected IP:PORT")
    return host, int(port)


def _api_tcp(value: str):
    """--api-listen: (IP, PORT), or the listening socket of `fd:N`."""
    if not value.startswith("fd:"):
        return _split_hostport(value, "--api-listen")
    import socket
    try:
        sock = socket.socket(fileno=int(value[3:]))
    except (ValueError, OSError) as exc:
        raise WeftError(f"invalid --api-listen {value!r}: not a socket handed to weftd ({exc})") from None
    if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise WeftError(f"invalid --api-listen {value!r}: not a TCP socket")
    return sock


class Controller:
    """Wires the store, the engine, the host watchers and the API together."""

    def __init__(self, args):
        from controller.driver import OpenFlowDriver
        from controller.engine import Engine
        from controller.recorder import BindingRecorder
        from ovsdb import nbserver, southbound
        from ovsdb.nbstore import NorthboundStore

        from controller import tlsconfig

        self.args = args
        of_host, of_port = _split_hostport(args.of_listen, "--of-listen")
        self.of_listen = (of_host, of_port)
        check_bind(of_host, of_port, "OpenFlow (--of-listen)")
        self.api_tcp = _api_tcp(args.api_listen) if args.api_listen else None   # checked before anything starts
        if isinstance(self.api_tcp, tuple):
            check_bind(*self.api_tcp, "the API (--api-listen)")
        self.tls = tlsconfig.from_flags(args.ssl_key, args.ssl_cert, args.ssl_ca, args.insecure_openflow)
        tlsconfig.configure_ovsdb_client(self.tls)
        self.driver = OpenFlowDriver()
        self.engine = Engine(self.driver, ha=args.ha, settle=COLD_SETTLE)
        self.nb_remote = args.nb or nbserver.ensure_local_server(os.path.join(args.run_dir, "nb"))
        from ovsdb import nbschema
        nbschema.upgrade_server(self.nb_remote, self.tls)   # in place; refuses a newer database
        self.store = NorthboundStore(self.nb_remote)
        self.recorder = BindingRecorder(self.store)
        scheme = "tcp" if args.insecure_openflow else "ssl"
        self.targets = args.controller_target or [f"{scheme}:{of_host}:{of_port}"]
        # one thread configures every host's Open vSwitch through its IDL and reports bindings
        self.hosts = southbound.HostManager(self._on_bindings, self.targets, args.tunnel,
                                            args.datapath_type, tls=self.tls is not None)
        self.lock = None
        if args.ha:                     # standby until the lock is granted
            from ovsdb.nblock import ActiveLock
            self.hosts.set_writable(False)
            self.recorder.set_paused(True)
            self.lock = ActiveLock(self.nb_remote, self._on_active)
        self.host_names: set[str] = set()     # the hosts handed to self.hosts
        self.dhcp = None
        self.traffic = None
        from collectors.drops import DropLog
        from controller.drop_service import DropService
        self.drop_log = DropLog()                   # samples of dropped packets (packet-ins)
        self.drops = DropService(self.engine, self.drop_log)
        self.of_ready = threading.Event()
        self._model_cond = threading.Condition()
        self._latest_model = self.store.model
        self._configured_from = (None, None)
        self.drop_history = None
        if args.collector_ip:
            from controller.traffic import TrafficCollectors
            self.traffic = TrafficCollectors(self.engine, args.collector_ip,
                                             args.export_dir or os.path.join(args.run_dir, "exports"),
                                             history_dir=args.history_dir or os.path.join(args.run_dir, "history"))
            if self.traffic.history is not None:     # drop samples go to the same history
                from collectors.drop_history import DropHistory
                self.drop_history = DropHistory(self.traffic.history.history, self.drop_log)

    def start(self) -> None:
        from controller import api

        self.engine.start()
        self.recorder.start()
        threading.Thread(target=self._start_hosts, name="southbound-start", daemon=True).start()
        if self.drop_history is not None:
            self.drop_history.start()
        if self.traffic is not None:
            self.hosts.on_ifindexes = self.traffic.ifindexes_changed   # sFlow ifindex -> port
            self.traffic.start()
            for svc in self.traffic.services.values():
                self.engine.observe(svc.model_changed)
        self.store.subscribe(self.engine.model_changed)    # in commit order, under the store's lock
        self.store.subscribe(self._on_model_queued)
        self.store.start()
        with self.store.lock:      # the first snapshot (later ones come through the subscription)
            first, version = self.store.model, getattr(self.store, "version", None)
        self.engine.model_changed(first, version)
        self._on_model_queued(first)
        self._model_thread = threading.Thread(target=self._model_loop, name="hosts-config", daemon=True)
        self._model_thread.start()
        tcp = self.api_tcp
        self.api = api.Api(self.store, self.engine, self.dump_flows, self.traffic)
        self.api.dhcp_counters = lambda: dict(self.dhcp.counters) if self.dhcp else None
        self.api.host_config = self.host_config_status
        self.api.cluster = self.cluster_view
        # the drop service's packet-in counters, and what the engine held and released for parked NICs
        self.api.drops = self.drop_log
        self.api.drop_counters = collections.ChainMap(self.drops.counters, self.engine.fresh.counters)
        self.api.drop_history = self.drop_history
        token = read_token(self.args.api_token_file) if self.args.api_token_file else None
        tls = (self.args.api_tls_cert, self.args.api_tls_key) if self.args.api_tls_cert else None
        self.servers = api.serve(self.api, self.args.api_socket, tcp, token=token, tls=tls)
        if self.lock is not None:
            self.lock.start()
        # what the first load built (the model, the IDL's rows) lives as long as weftd: keep
        # the cyclic collector from walking it again and again (pauses grow with the store)
        gc.freeze()

    def _on_model_queued(self, model, _version=None) -> None:
        """From the store, under its lock: hand the snapshot to the host-configuration thread."""
        with self._model_cond:
            self._latest_model = model
            self._model_cond.notify()

    def _model_loop(self) -> None:
        """Host configuration and collectors follow the latest snapshot (intermediate ones skipped)."""
        seen = None
        while True:
            with self._model_cond:
                self._model_cond.wait_for(lambda: self._latest_model is not seen)
                model = seen = self._latest_model
            try:
                self._on_model(None, model)
            except Exception:
                LOG.exception("host configuration failed")

    def _on_model(self, _old, new) -> None:
        # the engine maps datapath ids to hosts itself; here only the hosts' configuration
        if new.hosts is self._configured_from[0] and new.traffic == self._configured_from[1]:
            return                  # most changes touch neither hosts nor exporter settings
        self._configured_from = (new.hosts, new.traffic)
        for name, host in new.hosts.items():
            self.hosts.set_host(name, host.ovsdb, host.tunnel_ip, self._exporter_settings(host, new.traffic),
                                host.providers)
        for name in self.host_names - new.hosts.keys():
            self.hosts.remove_host(name)
        self.host_names = set(new.hosts)

    def _exporter_settings(self, host, traffic) -> dict | None:
        """The host's exporters pointed at weft's collectors; None (leave them alone) without collectors."""
        from controller.traffic import exporter_settings
        from ovsdb import southbound

        if self.traffic is None:
            return None
        return exporter_settings(traffic, self.args.collector_ip, self.args.sflow_agent,
                                 southbound.datapath_id(host.name) >> 8 & 0xFFFF)

    def _start_hosts(self) -> None:
        """Configure hosts only once the OpenFlow listener is up: a host told about a controller
        that is not listening yet backs off for a second."""
        self.of_ready.wait(10)
        self.hosts.start()

    def _on_active(self, active: bool) -> None:
        """From the lock's thread: this replica became active (True) or standby (False)."""
        LOG.warning("ha: %s %s", self.args.name or "weftd",
                    "holds lock weftd_active: active (master on every switch, configures hosts, "
                    "answers DHCP)" if active else
                    "is standby: another replica holds lock weftd_active (slave on every switch, "
                    "watches hosts, serves the API)")
        self.engine.set_active(active)
        self.hosts.set_writable(active)
        self.recorder.set_paused(not active)

    def role(self) -> str:
        return "active" if self.engine.active else "standby"

    def self_view(self) -> dict:
        scheme = "http" if self.args.api_no_tls else "https"
        api = (f"unix:{self.args.api_socket}" if self.args.api_socket
               else f"{scheme}://{self.args.api_listen}")
        return {"name": self.args.name or "weftd", "kind": "weftd", "role": self.role(),
                "pid": os.getpid(), "address": "tcp:%s:%d" % self.of_listen, "api": api,
                "active_since": self.engine.active_since}

    def cluster_view(self, only_self: bool = False):
        """This replica, its peers (their own word), the northbound members (OVSDB _Server)."""
        from controller import cluster
        me = self.self_view()
        if only_self:
            return me
        peers = [cluster.weftd_peer(*p.split("=", 1)) for p in self.args.peer]
        return [me, *peers, *cluster.nb_members(self.nb_remote)]

    def host_config_status(self) -> dict[str, dict]:
        """Per host: {state: connecting|configuring|configured|failed, configured_at, error, attempts}."""
        return self.hosts.status()

    def _on_bindings(self, host: str, bindings: dict[str, tuple[int, str]]) -> None:
        """From the southbound thread: queue only (the engine first, it is what port-up waits for)."""
        self.engine.bindings_changed(host, bindings)
        self.recorder.record(host, bindings)

    def dump_flows(self, host: str, timeout: float = 5.0) -> list[dict]:
        """Installed flows of a host, straight from its switch (flow-stats over OpenFlow)."""
        dp = self.engine.datapath(host)
        if dp is None:
            raise WeftError(f"host {host!r} is not connected to the controller", 503)
        body = self.driver.dump_flows(dp, timeout)
        if body is None:
            raise WeftError(f"host {host!r} did not answer the flow dump in {timeout:.0f} s", 504)
        from controller.trace_service import parsed
        return [{"table": s.table_id, "priority": s.priority, "cookie": s.cookie,
                 "packets": s.packet_count, "bytes": s.byte_count,
                 "match": str(dict(s.match.items())),
                 "actions": "; ".join(str(i) for i in s.instructions),
                 "flow": parsed(s)} for s in body]      # read back, for weft trace --installed


def _listening(host: str, port: int) -> bool:
    """Whether a TCP socket of this network namespace listens on host:port (/proc/net/tcp)."""
    import socket
    import struct
    want_ip = "00000000" if host in ("0.0.0.0", "") else "%08X" % struct.unpack(
        "<I", socket.inet_aton(host))[0]
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                ip, hexport = local.split(":")
                if state == "0A" and int(hexport, 16) == port and ip in (want_ip, "00000000"):
                    return True
    except OSError:
        return True       # cannot tell: do not hold the hosts back
    return False


def _signal_when_listening(controller: Controller) -> None:
    import time
    host, port = controller.of_listen
    deadline = time.monotonic() + 10
    while not _listening(host, port) and time.monotonic() < deadline:
        time.sleep(0.01)
    controller.of_ready.set()


def run_openflow(controller: Controller) -> None:
    """Run the os-ken application manager (blocks)."""
    os.environ.setdefault("OSKEN_HUB_TYPE", "native")
    from os_ken import cfg
    from os_ken.base import app_manager
    from os_ken.lib import hub

    from controller import oflisten
    from controller.dhcp_service import DhcpService
    from controller.nd_service import NdService
    from controller.ofapp import OpenFlowSinks

    controller.dhcp = DhcpService(controller.engine, controller.args.tunnel, controller.args.underlay_mtu)
    from controller.edge_service import EdgeService
    edge = EdgeService(controller.engine, controller.store)
    edge.start()
    sinks = OpenFlowSinks(controller.engine, controller.driver, controller.dhcp, NdService(controller.engine),
                          edge=edge)
    host, port = controller.of_listen
    cfg.CONF(args=[f"--ofp-listen-host={host}", f"--ofp-tcp-listen-port={port}"],
             project="os_ken")
    # a connection whose peer vanished is closed after 4 unanswered echoes 5 s apart: weftd
    # admits one connection per datapath id, so a dead one must not keep the switch out
    cfg.CONF.set_override("echo_request_interval", 5.0)
    cfg.CONF.set_override("maximum_unreplied_echo_requests", 3)
    oflisten.install(controller.listener)
    threading.Thread(target=_signal_when_listening, args=(controller,), daemon=True).start()
    manager = app_manager.AppManager.get_instance()
    manager.load_apps(["controller.ofapp"])
    contexts = manager.create_contexts()
    services = manager.instantiate_apps(**contexts, weft=sinks)
    hub.joinall([s for s in services if s])


def _listener(controller: Controller):
    """The OpenFlow listener: TLS-only unless --insecure-openflow; refusals go to the engine."""
    os.environ.setdefault("OSKEN_HUB_TYPE", "native")
    from controller import oflisten, tlsconfig

    context = None
    if not controller.args.insecure_openflow:
        context = tlsconfig.server_context(controller.tls)
    from controller.ofpacketin import OFPT_PACKET_IN
    # drop samples are read off the wire on the OpenFlow loop (controller/ofpacketin.py); every
    # other packet-in goes on to os-ken and weft's app as before
    return oflisten.Listener(*controller.of_listen, context, controller.engine.switch_refused,
                             {OFPT_PACKET_IN: controller.drops.raw_packet_in})


def _notify_ready(controller: Controller) -> None:
    """Tell systemd (Type=notify) weftd is ready: the store is read and the API listens (both
    done in start()), and the OpenFlow listener accepts connections."""
    from controller import sdnotify
    if controller.of_ready.wait(30):
        sdnotify.notify("READY=1", f"STATUS=OpenFlow on {controller.args.of_listen}, API on "
                                   f"{controller.args.api_socket or controller.args.api_listen}")
    else:
        LOG.error("the OpenFlow listener did not come up in 30 s")


def check_config(args) -> int:
    """`weftd --check-config`: what weftd would refuse at start, without starting anything."""
    from controller import tlsconfig
    try:
        _split_hostport(args.of_listen, "--of-listen")
        if args.api_listen:
            _split_hostport(args.api_listen, "--api-listen")
            read_token(args.api_token_file)
        tlsconfig.from_flags(args.ssl_key, args.ssl_cert, args.ssl_ca, args.insecure_openflow)
        for flag, path in (("--api-tls-cert", args.api_tls_cert), ("--api-tls-key", args.api_tls_key)):
            if path and not os.access(path, os.R_OK):
                raise WeftError(f"{flag} {path}: no such readable file")
    except WeftError as exc:
        sys.stderr.write(f"weftd: error: {exc}\n")
        return 1
    print(f"weftd: configuration OK{f' ({args.config})' if args.config else ''}")
    return 0


def main(argv=None) -> int:
    warnings.simplefilter("ignore")
    from controller.tuning import tune_interpreter
    tune_interpreter()
    args = parse_args(argv)
    if args.check_config:
        return check_config(args)
    from controller import journal, sdnotify
    handlers = ([logging.FileHandler(args.log_file)] if args.log_file else
                [journal.JournalHandler()] if journal.stderr_is_journal() else [logging.StreamHandler()])
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        os.makedirs(args.run_dir, exist_ok=True)
        if args.pidfile:
            with open(args.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
        controller = Controller(args)
        controller.listener = _listener(controller)      # bound now: a taken port fails the start
        controller.start()
    except WeftError as exc:
        LOG.error("cannot start: %s", exc)
        sys.stderr.write(f"weftd: error: {exc}\n")
        return 1
    threading.Thread(target=_notify_ready, args=(controller,), name="sd-notify", daemon=True).start()

    def stop(_sig, _frame):
        LOG.info("weftd stopping")
        sdnotify.notify("STOPPING=1")
        if controller.traffic is not None:
            try:                # the flow history gets the buckets still in memory
                controller.traffic.stop()
                if controller.drop_history is not None:
                    controller.drop_history.stop()
            except Exception as exc:
                LOG.warning("stopping the collectors: %s", exc)
        if args.pidfile:
            try:
                os.unlink(args.pidfile)
            except FileNotFoundError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info("weftd running: OpenFlow on %s:%d (%s), API on %s", *controller.of_listen,
             "plain TCP, --insecure-openflow" if args.insecure_openflow else "TLS, switch certificates checked",
             args.api_socket or args.api_listen)
    run_openflow(controller)
    return 0


if __name__ == "__main__":
    sys.exit(main())
