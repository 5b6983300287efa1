"""sd_notify datagrams and journal records (native protocol) as a listening socket receives them."""
import logging
import socket
import struct

from controller import journal, sdnotify


def test_notify_sends_one_datagram_to_a_path_or_abstract_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert sdnotify.notify("READY=1", "STATUS=up")
        assert sock.recv(100) == b"READY=1\nSTATUS=up"
    name = f"weft-test-{id(tmp_path)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("STOPPING=1")
        assert sock.recv(100) == b"STOPPING=1"


def test_notify_without_a_manager_does_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sdnotify.notify("READY=1")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody"))
    assert not sdnotify.notify("READY=1")            # no listener: no exception either


def parse(datagram: bytes) -> dict:
    fields, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key, (size,) = line, struct.unpack("<Q", datagram[nl + 1:nl + 9])
            value = datagram[nl + 9:nl + 9 + size]
            i = nl + 9 + size + 1
        fields[key.decode()] = value.decode()
    return fields


def test_journal_records_carry_weft_fields(tmp_path):
    path = str(tmp_path / "journal")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        handler = journal.JournalHandler(path=path)
        log = logging.getLogger("weft-test-journal")
        log.addHandler(handler)
        log.propagate = False
        try:
            log.warning("port %s up on %s", "red/net/a", "hv1",
                        extra=journal.fields(host="hv1", port="red/net/a"))
            record = parse(sock.recv(65536))
            log.error("two\nlines")
            multi = parse(sock.recv(65536))
        finally:
            log.removeHandler(handler)
            handler.close()
    assert record["MESSAGE"] == "port red/net/a up on hv1"
    assert (record["WEFT_HOST"], record["WEFT_PORT"], record["WEFT_TENANT"]) == ("hv1", "red/net/a", "red")
    assert record["PRIORITY"] == "4" and record["SYSLOG_IDENTIFIER"] == "weftd"
    assert record["CODE_FUNC"] == "test_journal_records_carry_weft_fields"
    assert multi["MESSAGE"] == "two\nlines" and multi["PRIORITY"] == "3" and "WEFT_HOST" not in multi
