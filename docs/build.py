"""Build the documentation offline, executing the example gallery.

    python docs/build.py [--data ../shared/data] [--fast] [--pattern REGEX] [--out docs/_build/html]

1. Fills a scikit-learn data home (docs/_build/scikit_learn_data) from local copies of the
   datasets (``docs/offline_data.py``), so that the examples' ``fetch_openml`` and
   ``fetch_california_housing`` calls read them instead of the network.
2. Runs ``sphinx-build -W`` (warnings are errors) with SCIKIT_LEARN_DATA pointing there.

--fast runs each example on a subset (FUSEDMLP_EXAMPLES_FAST=1), as CI does; --pattern selects
examples by file name. Needs the ``docs`` dependency group: ``pip install --group docs``.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FUSEDMLP_DATA",
                                                         str(HERE.parent.parent / "shared" / "data")),
                        help="directory with fashion_mnist.npz, mnist.npz, california_housing.npz")
    parser.add_argument("--fast", action="store_true", help="run the examples on subsets")
    parser.add_argument("--pattern", default=None, help="only the examples matching this regex")
    parser.add_argument("--out", default=str(HERE / "_build" / "html"))
    args = parser.parse_args(argv)

    data_home = HERE / "_build" / "scikit_learn_data"
    subprocess.run([sys.executable, str(HERE / "offline_data.py"), str(data_home),
                    "--source", args.data], check=True)
    env = dict(os.environ, SCIKIT_LEARN_DATA=str(data_home), MPLBACKEND="Agg")
    if args.fast:
        env["FUSEDMLP_EXAMPLES_FAST"] = "1"
    if args.pattern:
        env["FUSEDMLP_EXAMPLES_PATTERN"] = args.pattern
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(HERE), args.out]
    print(" ".join(cmd), flush=True)
    return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
