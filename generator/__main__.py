"""``python -m generator IMAGE "PROMPT" [options]``: see generator.cli."""

from generator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
