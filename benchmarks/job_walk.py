"""Walk one job from the worker entry point to its stored record and count its stops.

A stop is a distinct function of the ``adbench`` core (``harness/``) entered while the job runs,
down to ``--depth`` (default 6) nested core calls below the worker entry (deeper calls are the internals of one
stop: metric maths, image decoding). Prints the stops in order of first entry, the files they live
in, and how many times the walk comes back to ``runner.py`` after a stop in another file. Runs one tiny
training-free job on generated data (CPU, a few seconds)::

    python benchmarks/job_walk.py [--depth 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs" / "example_plugin"))
os.environ.setdefault("ADBENCH_PLUGINS", "adbench_median")


def write_data(root: Path) -> None:
    """One MVTec-like category: three normal train images, two normal and two anomalous test images."""
    rng = np.random.default_rng(0)
    for split, n in (("train/good", 3), ("test/good", 2), ("test/square", 2)):
        (root / "alpha" / split).mkdir(parents=True)
        for i in range(n):
            img = (128 + rng.normal(0, 8, (32, 32, 3))).clip(0, 255).astype(np.uint8)
            if split == "test/square":
                img[8:16, 8:16] = 255
                mask = np.zeros((32, 32), np.uint8)
                mask[8:16, 8:16] = 255
                (root / "alpha" / "ground_truth" / "square").mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(root / "alpha" / "ground_truth" / "square" / f"{i:03d}_mask.png")
            Image.fromarray(img).save(root / "alpha" / split / f"{i:03d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=6, help="nested core calls counted below the entry")
    args = parser.parse_args()

    from adbench.jobs import RunSpec
    from adbench.planner import group_jobs
    from adbench.runner import Runner, execute_groups
    from adbench.store import ResultsStore

    core = str(REPO / "harness")
    with tempfile.TemporaryDirectory() as tmp:
        write_data(Path(tmp) / "data")
        spec = RunSpec(
            methods=["median_dev"], datasets=["folder"], roots={"folder": f"{tmp}/data"}, progress=False
        )
        groups = group_jobs(Runner(spec, ResultsStore(f"{tmp}/r")).plan())
        stops: dict[tuple[str, str], None] = {}
        depth = {"n": 0}
        reentries = {"n": 0, "last": "", "callbacks": 0}

        def profile(frame, event, arg):  # noqa: ANN001 - sys.setprofile's signature
            path = frame.f_code.co_filename
            if not path.startswith(core):
                return
            if event == "call":
                depth["n"] += 1
                if depth["n"] <= args.depth + 1:
                    stops.setdefault((os.path.relpath(path, REPO), frame.f_code.co_qualname), None)
                    # the walk comes back to runner.py: a call made from (or into) runner.py after the
                    # previous stop was in another file
                    caller = frame.f_back.f_code.co_filename if frame.f_back else ""
                    here = path if path.endswith("runner.py") else caller
                    if (
                        path.endswith("runner.py")
                        and caller.startswith(core)
                        and not caller.endswith("runner.py")
                    ):
                        reentries["callbacks"] += 1  # another file calls back into the hub
                    if (
                        here.endswith("runner.py")
                        and reentries["last"]
                        and not reentries["last"].endswith("runner.py")
                    ):
                        reentries["n"] += 1
                    reentries["last"] = path
            elif event == "return":
                depth["n"] -= 1

        sys.setprofile(profile)
        try:
            summary = execute_groups(spec, f"{tmp}/r", groups[:1])
        finally:
            sys.setprofile(None)
    assert summary.done == 1, summary
    files = list(dict.fromkeys(f for f, _ in stops))
    for f, name in stops:
        print(f"  {f}:{name}")
    print(
        f"stops: {len(stops)}  files: {len(files)}  runner.py re-entered: {reentries['n']}"
        f"  (called back from other files: {reentries['callbacks']})"
    )
    print("files:", ", ".join(files))


if __name__ == "__main__":
    main()
