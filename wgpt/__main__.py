"""``python -m wgpt`` (and ``torchrun -m wgpt``) run the command line."""

from wgpt.cli import run

if __name__ == "__main__":
    run()
