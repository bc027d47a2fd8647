"""Access policy shared by the operator (validation) and the token server (decisions)."""
