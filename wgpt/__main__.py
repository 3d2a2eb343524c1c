"""``python -m wgpt`` (and ``torchrun -m wgpt``) run the command line."""

from wgpt.cli import app

if __name__ == "__main__":
    app(prog_name="wgpt")
