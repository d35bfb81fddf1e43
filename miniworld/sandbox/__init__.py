"""Running candidate code: the AST gates, confinement, the Spark runner (server, pool, worker) and
the plain-Python runner. Empty on purpose: the confined child processes import from here and must
not pull in Spark on the way."""
