"""The coordinator's side of a Flower deployment: the SuperLink connection, runs submitted and followed, launches.

- :mod:`coordinator.federated.flower_config`: run-config defaults, value checks, the TOML files Flower reads;
- :mod:`coordinator.federated.superlink`: the ``flwr`` CLI: connection, submitting and following a run;
- :mod:`coordinator.federated.launches`: the service's launches of studies, one run per study at a time.

See docs/flower.md and docs/federated.md.
"""
