"""The token server's in-memory view of the cluster, fed by list+watch."""
