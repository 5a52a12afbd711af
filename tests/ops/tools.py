"""Debian tools the deploy checks run (systemd-analyze, promtool, nginx): installed with
apt-get when missing and possible (root), else the check fails saying how to get them."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
        path = shutil.which(binary)
        if path:
            return path
    pytest.fail(f"{binary} is required for this check: apt-get install {package}")
