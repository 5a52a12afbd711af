"""`python -m kmeweb.knox.simulator serve|upload ...`"""

from kmeweb.knox.simulator.cli import kme_sim

if __name__ == "__main__":
    kme_sim(prog_name="python -m kmeweb.knox.simulator")
