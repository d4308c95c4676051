"""The typed client's calls, one module per family, as the server's calls/ are.

Each module holds a mixin of `Client` methods; `monge.client.Client` (client/client.py)
joins them with the connection they share (`_call`, the stubs, the default timeout).
"""
