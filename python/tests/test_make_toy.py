"""python/make_toy.py: every step waits for the steps whose output it reads, and no lane waits on itself.
    cd python && /usr/bin/python3 -m unittest tests.test_make_toy"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import make_toy  # noqa: E402

W = "/work"


def needed(recipe: dict, name: str) -> set:
    """The steps `name` waits for, directly or through others."""
    out = set()
    for need in recipe[name][1]:
        out |= {need} | needed(recipe, need)
    return out


class MakeToyTest(unittest.TestCase):
    def test_every_step_waits_for_the_checkpoints_it_reads(self):
        recipe = make_toy.steps(W, "/repo/encoder.pt")
        for name in recipe:
            cmd = make_toy.command(name, recipe[name], W)
            read = {m for arg in cmd[2:] for m in re.findall(rf"^{W}/([^/]+?)(?:\.pt|/vae\.pt)$", arg)} - {name}
            self.assertLessEqual(read, needed(recipe, name), f"{name} reads {sorted(read)}")

    def test_a_lane_runs_what_it_needs_first(self):
        recipe = make_toy.steps(W, "/repo/encoder.pt")
        order = list(recipe)
        for name, (lane, needs, _) in recipe.items():
            for need in needs:
                self.assertIn(need, recipe)
                if recipe[need][0] == lane:
                    self.assertLess(order.index(need), order.index(name), f"{name} waits for {need}")

    def test_each_step_writes_its_own_checkpoint_and_workdir(self):
        recipe = make_toy.steps(W, "/repo/encoder.pt")
        workdirs = []
        for name in recipe:
            cmd = make_toy.command(name, recipe[name], W)
            self.assertEqual(cmd[cmd.index("--out") + 1], f"{W}/{name}.pt")
            if "--workdir" in cmd:
                workdirs.append(cmd[cmd.index("--workdir") + 1])
        self.assertEqual(len(workdirs), len(set(workdirs)))


if __name__ == "__main__":
    unittest.main()
