"""`make demo` (``python -m deploy demo``): the whole exchange on this machine, end to end.

- :mod:`deploy.demo.run`: a local chain, the contracts, a hospital node that ingests raw data,
  patients who enrol, consent and revoke, a study request, and at the end every event read
  back from the chain;
- :mod:`deploy.demo.study`: a second hospital joins and a study trains across both on the
  Flower deployment engine, checked afterwards against the chain and the files.
"""

from deploy.demo.run import run_demo

__all__ = ["run_demo"]
