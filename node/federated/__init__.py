"""The node's side of the federation: the SuperNode it runs (``supernode``)."""
