"""One module per solver RPC: parse (validate once), run on a worker, encode; `common` holds
what they share (points, weights, mass checks, sparse plans, diagnostics)."""
