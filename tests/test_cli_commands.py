"""Every `toto-eval` command as a user calls it: a subprocess, `--help` and one real call each, exit codes, errors
on stderr as one `toto-eval: error:` line, and every option documented with its default.

Run: python -m pytest tests/test_cli_commands.py -q
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from toto_eval.harness.cli import build_parser
from toto_eval.harness.results import result_checksum
from toto_eval.harness.run_config import config_options

COMMANDS = ["run", "plan", "ls", "cache", "leaderboard", "davis-score", "ego4d-score", "robot", "cater-generate"]


def toto_eval(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "toto_eval.harness.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


def test_every_command_is_registered_and_every_option_has_help():
    parsers = _subparsers(build_parser())
    assert set(COMMANDS) <= set(parsers)
    for name, parser in parsers.items():
        for action in parser._actions:
            if action.option_strings and action.help != argparse.SUPPRESS:
                assert action.help, f"toto-eval {name} {action.option_strings[0]} has no help"


@pytest.mark.parametrize("command", [*COMMANDS, "robot demos"])
def test_help_of_every_command(command):
    done = toto_eval(*command.split(), "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage: toto-eval") and not done.stderr
    assert "-v, --verbose" in done.stdout or command == "robot"


def test_errors_are_one_line_on_stderr_with_exit_code_2(tmp_path):
    cases = [
        (["run", "--backbone", "toto_tst", "--tasks", "imagenet_probe"], "did you mean toto_test"),
        (["run", "--backbone", "toto_test", "--tasks", "imagenet_probe", "--set", "imagenet_probe.probe.lr=1"], "lr"),
        (["run", "--config", str(tmp_path / "nope.toml")], "--config file not found"),
        (
            ["ego4d-score", "--annotations", str(tmp_path / "a.json"), "--predictions", str(tmp_path / "p.json")],
            "a.json",
        ),
    ]
    for args, message in cases:
        done = toto_eval(*args, "--cache-dir", str(tmp_path)) if args[0] == "run" else toto_eval(*args)
        errors = [line for line in done.stderr.splitlines() if line.startswith("toto-eval: error:")]
        assert done.returncode == 2 and len(errors) == 1 and message in errors[0], done.stderr
        assert "Traceback" not in done.stderr
    unknown = toto_eval("frobnicate")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mini_cache) -> Path:
    """One small real run: toto_test on a seeded 60-image subset of the mini ImageNet, 1 epoch, last layer."""
    out = tmp_path_factory.mktemp("cli-run")
    args = ["--backbone", "toto_test", "--tasks", "imagenet_probe", "--limit", "60", "--layers", "-1"]
    args += ["--set", "imagenet_probe.probe.epochs=1", "--cache-dir", str(mini_cache), "--results-dir", "results"]
    done = toto_eval("run", *args, "--no-progress", cwd=out)
    assert done.returncode == 0, done.stderr
    assert "imagenet_probe  ok" in done.stdout
    return out


def test_quiet_run_draws_no_progress_bars(run_dir, mini_cache):
    """-q means warnings only: the feature and probe bars go too, not just the messages (they did not)."""
    args = ["--backbone", "toto_test", "--tasks", "imagenet_probe", "--limit", "60", "--layers", "-1", "--seed", "1"]
    args += ["--set", "imagenet_probe.probe.epochs=1", "--cache-dir", str(mini_cache), "--results-dir", "quiet"]
    done = toto_eval("run", *args, "-q", cwd=run_dir)
    assert done.returncode == 0 and "imagenet_probe  ok" in done.stdout, done.stderr
    assert "epoch/s" not in done.stderr and "clip/s" not in done.stderr and "[toto-eval]" not in done.stderr


def test_seeds_run_once_per_seed_into_its_own_folder_on_features_computed_once(run_dir, mini_cache):
    """--seeds 1-2 --limit 90: results/seed1 and results/seed2, each equal to a plain --seed run, the second seed
    reading the first's features back (the --limit subset is the same for every seed; it was drawn from the
    seed, so seeds compared different samples), and a table over the seeds."""
    args = ["--backbone", "toto_test", "--tasks", "imagenet_probe", "--layers", "-1", "--no-progress", "--limit", "90"]
    args += ["--set", "imagenet_probe.probe.epochs=1", "--cache-dir", str(mini_cache)]
    done = toto_eval("run", *args, "--seeds", "1-2", "--results-dir", "many", cwd=run_dir)
    assert done.returncode == 0, done.stderr
    found = [run_dir / f"many/seed{s}/toto_test/random-init/imagenet_probe.json" for s in (1, 2)]
    docs = [json.loads(path.read_text()) for path in found]
    assert [d["seed"] for d in docs] == [1, 2]
    assert docs[1]["extra"]["cache"]["train"]["computed"] == 0 and docs[1]["extra"]["cache"]["val"]["computed"] == 0
    header, _, row = done.stdout.strip().splitlines()[-3:]
    assert header.split()[-4:] == ["seed", "1", "seed", "2"]
    assert row.split()[-2:] == [f"{d['main_score']:.4f}" for d in docs]

    single = toto_eval("run", *args, "--seed", "2", "--results-dir", "single", cwd=run_dir)
    assert single.returncode == 0, single.stderr
    alone = json.loads((run_dir / "single/toto_test/random-init/imagenet_probe.json").read_text())
    assert alone["metrics"] == docs[1]["metrics"]

    for bad, message in ((["--seeds", "3-1"], "empty range"), (["--seeds", "0-1", "--seed", "1"], "exclude")):
        refused = toto_eval("run", *args, *bad, cwd=run_dir)
        assert refused.returncode == 2 and message in refused.stderr and "Traceback" not in refused.stderr


def _result(folder: Path) -> dict:
    return json.loads((folder / "results/toto_test/random-init/imagenet_probe.json").read_text())


def test_run_writes_a_result_and_config_files_run_it_again(run_dir, mini_cache):
    first = _result(run_dir)
    assert first["flags"] == {"limited": True, "random_init": True, "mini": True}
    assert first["run"]["limit"] == 60 and first["config"]["probe"]["epochs"] == 1
    stored = str(run_dir / "results/toto_test/random-init/imagenet_probe.json")
    again = toto_eval("run", "--config", stored, "--cache-dir", str(mini_cache), "--results-dir", "again",
                      "--no-progress", cwd=run_dir)  # fmt: skip
    assert again.returncode == 0, again.stderr
    redo = json.loads((run_dir / "again/toto_test/random-init/imagenet_probe.json").read_text())
    assert redo["metrics"] == first["metrics"] and redo["config"] == first["config"] and redo["run"] == first["run"]
    assert first["run"]["limit_seed"] == 0

    # recorded before --limit-seed, when --seed drew the subset: a rerun draws the same one
    legacy = {**first, "seed": 3, "run": {k: v for k, v in first["run"].items() if k != "limit_seed"}}
    (run_dir / "legacy.json").write_text(json.dumps({**legacy, "checksum": result_checksum(legacy)}))
    options = config_options(run_dir / "legacy.json")
    assert options[options.index("--seed") + 1] == "3" and options[options.index("--limit-seed") + 1] == "3"
    toml = run_dir / "run.toml"
    toml.write_text(
        'backbone = "toto_test"\ntasks = ["imagenet_probe"]\nlimit = 60\nlayers = "-1"\n'
        "[task.imagenet_probe.probe]\nepochs = 1\n"
    )
    from_toml = toto_eval("run", "--config", str(toml), "--cache-dir", str(mini_cache), "--results-dir", "toml",
                          "--no-progress", cwd=run_dir)  # fmt: skip
    assert from_toml.returncode == 0, from_toml.stderr
    assert (
        json.loads((run_dir / "toml/toto_test/random-init/imagenet_probe.json").read_text())["metrics"]
        == (first["metrics"])
    )


def test_ls_and_cache_commands(run_dir, mini_cache):
    tasks = toto_eval("ls", "tasks")
    assert tasks.returncode == 0 and "imagenet_probe" in tasks.stdout and "k400_probe" in tasks.stdout
    assert "toto_tiny" in toto_eval("ls", "backbones").stdout
    assert "attentive" in toto_eval("ls", "probes").stdout
    listed = toto_eval("cache", "ls", "--cache-dir", str(mini_cache))
    assert listed.returncode == 0 and "complete" in listed.stdout
    verified = toto_eval("cache", "verify", "--cache-dir", str(mini_cache))
    assert verified.returncode == 0 and "0 bad entries" in verified.stdout
    copy = run_dir / "cache-copy"
    shutil.copytree(mini_cache / "features", copy / "features")
    for kind in ("probes", "robot"):  # probe-grid checkpoints and robot outcomes, derived from the features
        (copy / kind / "0123abcd").mkdir(parents=True)
    pruned = toto_eval("cache", "prune", "--all", "--cache-dir", str(copy))
    assert pruned.returncode == 0 and not any((copy / "features").iterdir())
    assert not (copy / "probes").exists() and not (copy / "robot").exists()


def test_plan_command(run_dir, mini_cache):
    done = toto_eval("plan", "--backbone", "toto_test", "--tasks", "imagenet_probe", "--cache-dir", str(mini_cache))
    assert done.returncode == 0, done.stderr
    assert "imagenet_probe   train" in done.stdout and "cache:" in done.stdout
    paper = toto_eval("plan", "--backbone", "toto_large", "--random-init", "--tasks", "imagenet_probe,k400_probe",
                      "--sizes", "paper", "--cache-budget", "1T", "--gpus", "8", "--gpu-tflops", "989")  # fmt: skip
    assert paper.returncode == 0, paper.stderr
    assert "1281167" in paper.stdout and "online" in paper.stdout and "8 GPUs x 989 TFLOP/s" in paper.stdout


def test_leaderboard_command(run_dir):
    done = toto_eval("leaderboard", "--results-dir", "results", "--out", "board", "--include-flagged", cwd=run_dir)
    assert done.returncode == 0, done.stderr
    assert "toto_test" in (run_dir / "board/leaderboard.md").read_text()


def test_davis_score_command(tmp_path):
    from toto_eval.tasks.davis.mini import make_mini

    root = tmp_path / "DAVIS"
    make_mini(root)
    predictions = tmp_path / "pred"
    shutil.copytree(root / "Annotations" / "480p", predictions)  # the ground truth scores perfectly
    done = toto_eval("davis-score", "--davis-root", str(root), "--predictions", str(predictions))
    assert done.returncode == 0, done.stderr
    assert (predictions / "global_results-val.csv").exists() and "1.000" in done.stdout


def test_ego4d_score_command(tmp_path):
    from toto_eval.tasks.ego4d_sta import mini
    from toto_eval.tasks.ego4d_sta.data import load_split
    from toto_eval.tasks.ego4d_sta.results import write_results

    mini.make_mini(tmp_path, seed=0, videos=(2, 1, 1), episodes=2)
    annotations = next(tmp_path.glob("**/fho_sta_val.json"))
    uids = [a.uid for a in load_split(annotations, require_objects=True).annotations]
    predictions = tmp_path / "pred.json"
    write_results(predictions, {uid: [] for uid in uids})
    done = toto_eval("ego4d-score", "--annotations", str(annotations), "--predictions", str(predictions))
    assert done.returncode == 0, done.stderr
    assert "Box + Noun + Verb + TTC mAP (Overall)" in done.stdout


def test_robot_demos_command(tmp_path):
    done = toto_eval("robot", "demos", "--out", str(tmp_path), "--demos", "1", "--tasks", "kuka_pick",
                     "--image-size", "32")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "kuka_pick: 1/1 expert episodes succeeded" in done.stdout
    assert toto_eval("robot").returncode == 2  # a group without its subcommand: usage, exit 2


def test_cater_generate_command(tmp_path):
    out = tmp_path / "all_actions"
    done = toto_eval("cater-generate", "--out", str(out), "--videos", "2", "--width", "32", "--height", "32",
                     "--frames", "8", "--no-shadows")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(list(out.glob("videos/*"))) == 2 and (out / "lists").is_dir()
