# check_answers.py - bench-service.sh's agreement check: gradserve's and the Python service's answers to one body.
"""Usage: check_answers.py actor|entropy BODY GRADSERVE_ANSWER PYTHON_ANSWER

actor:   loss, entropy and grad.logits must agree elementwise within 1e-9 relative
         (|a - b| <= 1e-9 max(|a|, |b|) + 1e-15 max|array|: the small absolute floor, far
         below 1e-9 of the array's scale, admits entries that cancel to ~0 differently in
         the two implementations).
entropy: the two services draw their noise from different generators (Philox keyed by
         seed/row/sample vs torch's MT19937), so only the shapes are compared, and the
         estimator, samples and seed fields.
Arrays may be nested lists or base64 tensor objects. Exits 1 with a message on disagreement.
"""
import base64
import json
import sys

import numpy as np

REL = 1e-9


def arr(v):
    if isinstance(v, dict):
        dt = {"float64": "<f8", "int64": "<i8"}[v["dtype"]]
        return np.frombuffer(base64.b64decode(v["data"]), dtype=dt).reshape(v["shape"])
    return np.asarray(v, dtype=np.float64)


def get(obj, path):
    for k in path.split("."):
        obj = obj[k]
    return arr(obj)


def main():
    kind, body_path, gs_path, py_path = sys.argv[1:5]
    body = json.load(open(body_path))
    gs = json.load(open(gs_path))
    py = json.load(open(py_path))
    if kind == "actor":
        B, K = arr(body["logits"]).shape
        fields = {"loss": (B,), "entropy": (B,), "grad.logits": (B, K)}
        worst = 0.0
        for f, shape in fields.items():
            a, b = get(gs, f), get(py, f)
            if a.shape != shape or b.shape != shape:
                sys.exit("check: %s shapes gradserve %s python %s, want %s" % (f, a.shape, b.shape, shape))
            floor = 1e-15 * max(np.abs(a).max(), np.abs(b).max())
            tol = REL * np.maximum(np.abs(a), np.abs(b)) + floor
            diff = np.abs(a - b)
            if not (diff <= tol).all():
                i = np.unravel_index(np.argmax(diff - tol), a.shape)
                sys.exit("check: %s%s gradserve %.17g python %.17g differ beyond 1e-9 relative"
                         % (f, list(i), a[i], b[i]))
            rel = diff / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
            worst = max(worst, float(rel[np.abs(a) > floor * 1e3].max(initial=0.0)))
        print("actor B=%d: loss, entropy, grad.logits agree (max relative difference %.2e)" % (B, worst))
    elif kind == "entropy":
        d = body["distribution"]
        B, D = arr(d["loc"]).shape
        fields = {"entropy": (B,), "grad.loc": (B, D), "grad.log_scale": (B, D),
                  "stderr.entropy": (B,), "stderr.grad.loc": (B, D), "stderr.grad.log_scale": (B, D)}
        for f, shape in fields.items():
            a, b = get(gs, f), get(py, f)
            if a.shape != shape or b.shape != shape:
                sys.exit("check: %s shapes gradserve %s python %s, want %s" % (f, a.shape, b.shape, shape))
        for f in ("estimator", "samples", "seed"):
            if gs.get(f) != py.get(f):
                sys.exit("check: %s gradserve %r python %r" % (f, gs.get(f), py.get(f)))
        print("entropy B=%d: shapes agree (values not compared: different noise generators)" % B)
    else:
        sys.exit("check: unknown kind " + kind)


if __name__ == "__main__":
    main()
