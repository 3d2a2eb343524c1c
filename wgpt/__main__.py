"""``python -m wgpt``, ``torchrun -m wgpt`` and the ``wgpt`` script: the command line."""

import gc


def main() -> None:
    """Import the command line with the cyclic garbage collector paused, then run it.

    Importing torch, typer and rich makes hundreds of thousands of objects that live until the
    process ends, and the collector scans them over and over while they are made and again in
    every full collection afterwards (one took 73 ms in the middle of a 0.8 s generation). So
    they are frozen (``gc.freeze``): later collections look only at objects made after them.
    """
    gc.disable()
    from wgpt.cli import run

    gc.freeze()
    gc.enable()
    run()


if __name__ == "__main__":
    main()
