"""A tuilab session for test_nothing_lost.py to SIGKILL: it works like the app does (edit,
autosave after each change; train, autosave after each batch of metrics) and prints what it
has autosaved, one line at a time, until it is killed. Not a test module.

    python kill_driver.py edit    # add Linear e0, e1, ... forever, autosaving after each
    python kill_driver.py train   # a finished run, a stopped run, then a run until killed
    python kill_driver.py save N  # autosave a big workspace (version N, N+1, ...) in a loop
    python kill_driver.py save N stall  # ... but stop inside the write of version N+1: the
                                        # temp file written, not yet renamed; says INSIDE N+1
"""

from __future__ import annotations

import sys
import threading


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")  # one write per line
    sys.stdout.flush()


def edit() -> None:
    from tuilab.core.lab import Lab
    from tuilab.core.workspace import load_workspace_arg

    lab = Lab.from_workspace(load_workspace_arg("mlp"))
    say("READY")
    i = 0
    while True:
        lab.edit("add", "Linear", "", None, name=f"e{i}",
                 args={"in_features": 10, "out_features": 10})
        problem = lab.autosave()
        assert problem is None, problem
        say("EDIT", i)
        i += 1


def train() -> None:
    from tuilab.core.lab import Lab
    from tuilab.core.workspace import load_workspace_arg

    lab = Lab.from_workspace(load_workspace_arg("mlp"))
    lab.edit("set_arg", "0", "out_features", 64)
    lab.edit("set_arg", "2", "in_features", 64)
    finished = lab.start_run({"steps": 30, "batch_size": 8, "val_every": 10})
    for _ in lab.train(finished, threading.Event()):
        pass
    assert lab.autosave() is None
    say("FINISHED", len(finished.losses))
    stop = threading.Event()
    stopped = lab.start_run({"steps": 10**6, "batch_size": 8, "val_every": 0})
    for count, _ in enumerate(lab.train(stopped, stop)):
        if count == 1:
            stop.set()
    assert lab.autosave() is None
    say("STOPPED", len(stopped.losses))
    going = lab.start_run({"steps": 10**7, "batch_size": 8, "val_every": 50})
    for _ in lab.train(going, threading.Event()):
        assert lab.autosave() is None  # what the app should do with each metrics batch
        say("BATCH", len(going.losses))


def save(first: int, stall: bool = False) -> None:
    import os
    import stat
    import time

    from tuilab.core.autosave import adopt, autosave, pending_restore
    from tuilab.core.workspace import Workspace, load_preset

    leftover = pending_restore()  # the killed driver's copy: go on writing that file
    if leftover is not None:
        adopt(leftover.path)

    real_fsync = os.fsync
    current = {"version": first}

    def slow_disk_fsync(fd: int) -> None:
        """A slow disk: the temp file sits written but not yet renamed for a while, so a
        kill at a random moment often lands inside a write. With ``stall`` the write of
        version first+1 stops here for good (said as INSIDE), so the test's kill lands inside
        that write for certain, however busy the machine is."""
        if stat.S_ISREG(os.fstat(fd).st_mode):  # the temp file (not the folder's sync)
            if stall and current["version"] == first + 1:
                say("INSIDE", current["version"])
                while True:
                    time.sleep(3600)
            time.sleep(0.05)
        real_fsync(fd)

    os.fsync = slow_disk_fsync
    spec = load_preset("lenet")
    version = first
    while True:
        current["version"] = version
        points = 15_000 + version
        runs = [{"name": f"run {r}", "status": "finished", "config": {"steps": points},
                 "steps": list(range(1, points + 1)),
                 "losses": [1.0 / (s + version) for s in range(1, points + 1)]}
                for r in range(2)]
        autosave(Workspace(spec=spec, modes={"training": True},
                           training={"version": version}, runs=runs))
        say("SAVED", version)
        version += 1


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "edit":
        edit()
    elif kind == "train":
        train()
    else:
        save(int(sys.argv[2]), stall=sys.argv[3:] == ["stall"])
