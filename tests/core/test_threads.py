"""A worker's CPU thread share: the machine's cores divided among the live workers registered on it."""
from __future__ import annotations

import subprocess
import sys

import torch

from tagcore.threads import ThreadShare


def test_the_share_follows_the_live_workers(tmp_path):
    before = torch.get_num_threads()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with ThreadShare(folder=tmp_path, cores=8) as share:
            assert share.applied == 8 and torch.get_num_threads() == 8  # alone on the machine
            (tmp_path / str(other.pid)).touch()  # a second worker starts
            assert share.apply() == 4 and torch.get_num_threads() == 4
            (tmp_path / "999999999").touch()  # a worker that died without cleaning up is not counted
            assert share.apply() == 4 and not (tmp_path / "999999999").exists()
            other.kill()
            other.wait()
            assert share.apply() == 8  # the other one stopped: take its cores back
        assert not any(tmp_path.iterdir())  # deregistered on exit
    finally:
        other.kill()
        torch.set_num_threads(before)


def test_a_fixed_count_is_used_as_given_and_never_below_one(tmp_path):
    before = torch.get_num_threads()
    try:
        with ThreadShare(3, folder=tmp_path, cores=2) as share:
            assert share.applied == 3 and torch.get_num_threads() == 3
            assert not any(tmp_path.iterdir())  # a fixed count does not take part in the sharing
        for pid in range(5):
            (tmp_path / str(pid + 1)).touch()  # pid 1 is alive (init); others may be
        assert ThreadShare(folder=tmp_path, cores=1).threads() == 1
    finally:
        torch.set_num_threads(before)
