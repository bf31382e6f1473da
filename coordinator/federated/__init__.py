"""The coordinator's side of a Flower deployment: the SuperLink, its connection, runs, launches, hospitals' keys.

- :mod:`coordinator.federated.flower_config`: run-config defaults, value checks, the TOML files Flower reads;
- :mod:`coordinator.federated.superlink`: the ``flwr`` CLI: connection, submitting and following a run;
- :mod:`coordinator.federated.launches`: the service's launches of studies, one run per study at a time, on
  record in its database (:mod:`~coordinator.federated.launch_records`); what a restart does with the
  unfinished ones (:mod:`~coordinator.federated.resume`), reading the SuperLink's runs through the Control API
  (:mod:`~coordinator.federated.superlink_runs`);
- :mod:`coordinator.federated.managed`: the SuperLink the service runs itself and its Fleet gateway
  (:mod:`~coordinator.federated.gateway`), supervised (:mod:`~coordinator.federated.supervisor`), started
  with :mod:`~coordinator.federated.superlink_process` and :mod:`~coordinator.federated.processes`;
- :mod:`coordinator.federated.supernodes`: hospitals' SuperNode keys, through the Control API
  (:mod:`~coordinator.federated.control`);
- :mod:`coordinator.federated.tls`: the consortium CA's and the servers' certificates;
- :mod:`coordinator.federated.reply_pulls`: the ServerApp's pulls of reply objects, Flower's first back-off shortened.

See docs/flower.md, docs/federated.md and docs/coordinator.md.
"""
