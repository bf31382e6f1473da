"""The node's side of the federation: the SuperNode it runs, with one resident ClientApp worker.

- :mod:`node.federated.supernode`: the SuperNode's command line (:func:`supernode_command`, the
  one place it is made), node config and environment, and what its log says;
- :mod:`node.federated.run_supernode`: ``python -m node.federated.run_supernode``, Flower's
  SuperNode in a process of ours, with a resident ClientApp worker and shorter waits;
- :mod:`node.federated.worker`: the worker (run as a file by the SuperNode);
- :mod:`node.federated.worker_supervisor`: starts and restarts the worker inside the SuperNode;
- :mod:`node.federated.pacing`: Flower's fixed waits in the SuperNode loop, shortened.
"""

from node.federated.pacing import Pacing, PacingError

__all__ = ["Pacing", "PacingError"]
