"""A local, stateful KME cloud API simulator (Flask), for development, tests and benchmarks."""

from kmeweb.knox.simulator.app import create_simulator, get_state
from kmeweb.knox.simulator.demo import demo_config, seed_demo
from kmeweb.knox.simulator.state import SimState

__all__ = ["SimState", "create_simulator", "demo_config", "get_state", "seed_demo"]
