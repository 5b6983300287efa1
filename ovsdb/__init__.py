"""Everything OVSDB: weft's northbound store and the southbound configuration of each host's Open vSwitch."""
