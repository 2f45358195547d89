#!/bin/sh
# torch-check.sh - every endpoint over HTTP against an independent PyTorch float64 autograd computation (tests/torch_crosscheck.py).
# Usage: tests/torch-check.sh [path/to/gradserve] (make test-torch). Installs Debian's
# python3-torch and python3-numpy when missing and run as root (else says what to install);
# the script starts its own servers on 127.0.0.1 and stops them. About 25 s.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-build/gradserve}
py=${PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import torch, numpy' 2>/dev/null; then
    sh "$here/../.ci/deps.sh" python3 python3-torch python3-numpy
fi
exec "$py" "$here/torch_crosscheck.py" "$bin"
