"""Made-up tenants: a large, plausible one for measurements (scale.py, `flask seed-scale`).

The demo tenant of `flask seed-demo` lives in the simulator (kmeweb.knox.simulator.demo); the
command in kmeweb/cli.py points the integration at it.
"""
