"""weftd's TOML configuration: every flag has a key, flags override, bad keys and values are refused by name."""
import pytest

from controller import config
from controller.daemon import build_parser, check_config, parse_args


def write(tmp_path, text, name="weftd.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_long_flag_is_a_key():
    parser = build_parser()
    keys = config._keys(parser)
    longs = {o[2:] for a in parser._actions for o in a.option_strings if o.startswith("--")}
    assert longs - set(keys) == {"help", "config", "check-config"}
    assert {"of-listen", "ssl-key", "controller-target", "insecure-openflow", "underlay-mtu"} <= set(keys)


def test_file_values_are_used_and_flags_override_them(tmp_path):
    path = write(tmp_path, 'of-listen = "127.0.0.1:16653"\ninsecure-openflow = true\n'
                           'tunnel = "geneve"\nunderlay-mtu = 9000\n'
                           'controller-target = ["tcp:127.0.0.1:16653", "tcp:127.0.0.2:16653"]\n')
    args = parse_args(["--config", path])
    assert (args.of_listen, args.insecure_openflow, args.tunnel, args.underlay_mtu) == (
        "127.0.0.1:16653", True, "geneve", 9000)
    assert args.controller_target == ["tcp:127.0.0.1:16653", "tcp:127.0.0.2:16653"]
    args = parse_args(["--config", path, "--tunnel", "vxlan", "--controller-target=ssl:a:1",
                       "--underlay-mtu", "1500"])
    assert (args.tunnel, args.underlay_mtu) == ("vxlan", 1500)
    assert args.controller_target == ["ssl:a:1"]          # replaced, not added to


@pytest.mark.parametrize("text, message", [
    ('of_listen = "1.2.3.4:6653"\n', "key 'of_listen': unknown key (did you mean 'of-listen'?)"),
    ('nonsense = 1\n', "key 'nonsense': unknown key"),
    ('underlay-mtu = 100\n', "key 'underlay-mtu': underlay MTU must be an integer from 1280"),
    ('underlay-mtu = true\n', "key 'underlay-mtu': expected a string or a number, got a boolean"),
    ('tunnel = "gre"\n', "key 'tunnel': 'gre' is not one of vxlan, geneve"),
    ('insecure-openflow = "yes"\n', "key 'insecure-openflow': expected true or false, got a string"),
    ('controller-target = "ssl:a:1"\n', "key 'controller-target': expected a list"),
    ('controller-target = [1]\n', "key 'controller-target'[0]: expected a string, got an integer"),
    ('of-listen = 6653\n', "key 'of-listen': expected a string, got an integer"),
    ('x = [', "not valid TOML"),
    ('config = "other.toml"\n', "key 'config': unknown key"),
])
def test_bad_files_are_refused_naming_the_key(tmp_path, capsys, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SystemExit) as exc:
        parse_args(["--config", path])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"weftd: error: {path}: ") and message in err and err.count("\n") == 1


def test_missing_file_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--config", str(tmp_path / "nope.toml")])
    assert "cannot read" in capsys.readouterr().err


def test_check_config_reports_what_start_would_refuse(tmp_path, capsys):
    good = write(tmp_path, 'of-listen = "127.0.0.1:16653"\ninsecure-openflow = true\n')
    assert check_config(parse_args(["--config", good, "--check-config"])) == 0
    assert "configuration OK" in capsys.readouterr().out
    bad = write(tmp_path, f'ssl-key = "{tmp_path}/k.pem"\nssl-cert = "{tmp_path}/c.pem"\n'
                          f'ssl-ca = "{tmp_path}/ca.pem"\n', "bad.toml")
    assert check_config(parse_args(["--config", bad, "--check-config"])) == 1
    assert "no such readable file" in capsys.readouterr().err
    plain = write(tmp_path, 'of-listen = "127.0.0.1"\ninsecure-openflow = true\n', "plain.toml")
    assert check_config(parse_args(["--config", plain])) == 1
    assert "expected IP:PORT" in capsys.readouterr().err
