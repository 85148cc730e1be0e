"""``pde-popdyn info`` on snapshot files, and every subcommand writing into a closed pipe."""

import os
import subprocess
import sys

import numpy as np
import pytest

import pde_popdyn as pp
from pde_popdyn import cli
from pde_popdyn.io import SnapshotWriter
from pde_popdyn.presets import build


@pytest.fixture(scope="module")
def joint_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("info") / "run.h5"
    prob = build("quadratic-bilevel", {"eps": 0.05})
    grid = prob.grid(24, 8)
    pp.solve(prob.model(), grid, prob.initial(grid), 0.125, 1 / 32, save_every=2,
             progress=False, output=path)
    return path


def test_info_shows_the_dimensions_of_coordinates(joint_file, capsys):
    assert cli.main(["info", str(joint_file)]) == 0
    out = capsys.readouterr().out
    assert "(?)" not in out
    assert "    theta            (theta) (24,) float64" in out
    assert "    h                (h) (8,) float64" in out
    assert "    time             (time) (3,) float64" in out
    assert "    theta_bnds       (theta, bnds) (24, 2) float64" in out
    assert "    density          (time, theta, h) (3, 24, 8) float64, gzip" in out
    assert "dimensions: time = 3, bnds = 2, h = 8, theta = 24" in out


def test_info_of_an_ensemble_lists_agent_fields(tmp_path, capsys):
    path = tmp_path / "agents.h5"
    with SnapshotWriter(path, kind="ensemble") as w:
        w.write(0.0, theta=np.zeros(5), h=np.ones(5), agent_fields={"parent": np.arange(5)})
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "    agent            (agent) (5,) int64" in out
    assert "    parent           (time, agent) (1, 5) int64, gzip" in out


def into_closed_pipe(*args):
    """Run the command with its stdout a pipe whose reader has gone (as `... | head` does
    once head has read its lines)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "pde_popdyn.cli", *map(str, args)],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [["info", "FILE"], ["presets", "--verbose"], ["--help"]])
def test_a_closed_pipe_ends_the_command_quietly(joint_file, args):
    proc = into_closed_pipe(*[joint_file if a == "FILE" else a for a in args])
    assert proc.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored"
    assert proc.returncode in (0, 141)  # argparse itself ignores a closed pipe after --help
