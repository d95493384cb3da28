"""The net layer: namespaces, links, addresses, routes, sysctls and nftables.

It knows nothing of tenants or failover: it is given names and addresses.
"""
