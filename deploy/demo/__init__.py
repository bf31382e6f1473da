"""`make demo` (``python -m deploy demo``): the whole exchange on this machine, end to end, through the API.

- :mod:`deploy.demo.run`: a local chain, the contracts, a hospital node that ingests raw data,
  patients who enrol, and, through the coordinator service, consent and revoke; a study
  request; at the end every event read back from the chain;
- :mod:`deploy.demo.study`: a second hospital joins and a study trains across both on the
  Flower deployment engine, started, followed and downloaded through the API, checked
  afterwards against the chain and the files;
- :mod:`deploy.demo.receipt`: a patient's receipt from the API, each proof verified on chain;
- :mod:`deploy.demo.service` and :mod:`deploy.demo.api`: the coordinator service's process and
  the demo's HTTP client of it.
"""

from deploy.demo.run import run_demo

__all__ = ["run_demo"]
