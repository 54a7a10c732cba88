"""``python -m benchmarks [--quick] [--only NAME] [--json bench.json]`` — see benchmarks/harness.py."""

from benchmarks.harness import main

if __name__ == "__main__":
    main()
