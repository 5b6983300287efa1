"""weftd: the controller daemon (placeholder entry point until the controller lands)."""
import sys


def main(argv=None) -> int:
    sys.stderr.write("weftd: not implemented yet\n")
    return 1
