"""The emulated data centre: hypervisors and VMs as network namespaces running real Open vSwitch."""
