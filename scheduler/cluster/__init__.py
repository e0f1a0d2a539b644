"""Cluster mode: replicas sharing one fleet's capacity through etcd (leases, elections, transactions), Doorman-style.

etcd_client.py talks to etcd over its own gRPC API; keys.py names what is stored; shares.py is the leader's pure
arithmetic; election.py, leader.py and replica.py are the moving parts; peers.py routes Release to the holder.
"""
