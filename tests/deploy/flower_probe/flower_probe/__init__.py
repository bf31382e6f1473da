"""A tiny Flower app used by the deployment tests: each node pulls a vector toward its own target."""
