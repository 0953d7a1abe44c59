"""The ground floor: llama.cpp in process (model.py, decoder.py) and servers over HTTP (remote.py), behind
the Protocols of protocol.py; budgets, the text parser, votes and typed events are shared by both."""
