"""Proxy ARP for an NEA: a daemon that answers ARP for a set of addresses, and its client.

Importing this package costs nothing: Scapy is loaded only by `netlab.proxyarp.daemon`,
so the CLI can use `netlab.proxyarp.client` and still start fast.
"""
