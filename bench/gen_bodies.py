# gen_bodies.py - writes the deterministic request bodies of bench-service.sh (JSON text and base64 tensors).
"""Usage: python3 gen_bodies.py OUTDIR

Writes, for each batch size B in 1, 32, 256, 4096:
  actor_json_B.json    /v1/sac/discrete/actor, exact (logits [B][18], q [B][18], alpha)
  entropy_json_B.json  /v1/entropy, tanh_normal reparam (loc, log_scale [B][6], M = 16, seed)
and at B = 4096 the same requests with every tensor as a base64 object and "output": "base64":
  actor_b64_4096.json, entropy_b64_4096.json
plus small.json, the small body the bare server (the HTTP ceiling) is driven with.
Numbers are drawn from numpy's PCG64 with a fixed seed, so the files are byte-identical run to run.
"""
import base64
import json
import os
import sys

import numpy as np

K = 18          # actions of the discrete actor (Atari's full action set)
D = 6           # action dimensions of the tanh-normal policy
M = 16          # Monte Carlo samples per row
SEED = 12345    # the /v1/entropy seed
ALPHA = 0.2
BATCHES = (1, 32, 256, 4096)


def tensor(a):
    a = np.ascontiguousarray(a, dtype="<f8")
    return {"dtype": "float64", "shape": list(a.shape),
            "data": base64.b64encode(a.tobytes()).decode("ascii")}


def dump(path, obj):
    # repr-exact floats (17 significant digits at most), as a numpy/json client sends them.
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.Generator(np.random.PCG64(20240601))
    big = 4096
    logits = rng.normal(0.0, 2.0, size=(big, K))
    q = rng.normal(0.0, 1.0, size=(big, K))
    loc = rng.normal(0.0, 0.5, size=(big, D))
    log_scale = rng.uniform(-1.5, 0.5, size=(big, D))
    for B in BATCHES:
        dump(os.path.join(out, "actor_json_%d.json" % B),
             {"logits": logits[:B].tolist(), "q": q[:B].tolist(), "alpha": ALPHA})
        dump(os.path.join(out, "entropy_json_%d.json" % B),
             {"distribution": {"type": "tanh_normal", "loc": loc[:B].tolist(),
                               "log_scale": log_scale[:B].tolist()},
              "estimator": "reparam", "samples": M, "seed": SEED})
    dump(os.path.join(out, "actor_b64_%d.json" % big),
         {"logits": tensor(logits), "q": tensor(q), "alpha": ALPHA, "output": "base64"})
    dump(os.path.join(out, "entropy_b64_%d.json" % big),
         {"distribution": {"type": "tanh_normal", "loc": tensor(loc),
                           "log_scale": tensor(log_scale)},
          "estimator": "reparam", "samples": M, "seed": SEED, "output": "base64"})
    dump(os.path.join(out, "small.json"),
         {"logits": logits[:1].tolist(), "q": q[:1].tolist(), "alpha": ALPHA})


if __name__ == "__main__":
    main()
