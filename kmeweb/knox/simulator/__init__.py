"""A local, stateful KME cloud API simulator (Flask), for development, tests and benchmarks.

It shares no code with the client in `kmeweb.knox` (tests/knox/test_independence.py checks):
a second reading of kme-api.md, so one misreading cannot hide in both.
"""

from kmeweb.knox.simulator.app import create_simulator, get_state
from kmeweb.knox.simulator.demo import seed_demo
from kmeweb.knox.simulator.state import SimState

__all__ = ["SimState", "create_simulator", "get_state", "seed_demo"]
