"""Runs a metagrad CLI command with --json into a temporary file and returns the parsed summary."""
import json
import os
import subprocess
import tempfile


def run_metagrad_json(binary, args):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "out.json")
        subprocess.run([binary, *args, "--quiet", "--json", path], check=True, stdout=subprocess.DEVNULL)
        with open(path) as f:
            return json.load(f)


def compiled(summary):
    """The compiled training step's figures (kernels, peak_bytes, planned_peak_bytes, loops, remat, ...):
    `result.compile` of every bench command's summary."""
    return summary["result"]["compile"]
