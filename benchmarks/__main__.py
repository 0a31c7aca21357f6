"""``python -m benchmarks [--quick]``: run every benchmark, write benchmarks/results.json, print the table."""

from benchmarks.run import main

if __name__ == "__main__":
    main()
