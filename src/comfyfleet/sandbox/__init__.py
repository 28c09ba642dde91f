"""The sandbox: simulated ComfyUI (and later Vast cloud and instance hosts) on loopback.

It imports only the core (models, errors, config, util, graph), never the clients it tests.
"""
