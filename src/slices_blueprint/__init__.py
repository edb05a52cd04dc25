"""slices-blueprint: a SLICES BI site serving OpenStack VMs, Kubernetes pods and microVMs."""

__version__ = "0.1.0"
