"""The network model of weft: tenants, networks, ports, hosts and bindings, with validation."""
