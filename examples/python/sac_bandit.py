#!/usr/bin/env python3
"""sac_bandit.py - a small trainer that learns through gradserve (standard library only).

A linear softmax policy on a contextual bandit, trained with SAC's discrete actor gradient and
SAC's automatic temperature. The service does the maths; this script only keeps the weights.

  state     x = (1, x1, x2), x1 and x2 uniform in [-1, 1]
  actions   4; the critic's values q(x, a) = R[a] . x (here the true values, as a trained
            critic would give them; the best action is the sign and axis of x's larger part)
  policy    logits = W x + b, a linear head: gradserve returns d(loss)/dW and d(loss)/db
  update    W -= lr grad.head.weight, b -= lr grad.head.bias,
            log alpha -= lr_alpha grad_log_alpha (with target_entropy)

The actor's fixed point is the Boltzmann policy exp(q / alpha), which /v1/sac/discrete/policy
computes; the run ends by comparing the two on new states.

Usage: python3 examples/python/sac_bandit.py [--url URL] [--steps N] [--token T] [--check]
  --check  exit 1 unless the policy learned (greedy action right on >= 95 % of new states and
           KL(Boltzmann || policy) < 0.02 nats on average): make test runs it so.
"""
import argparse
import json
import math
import random
import sys
import urllib.error
import urllib.request

R = [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]
K, N = len(R), len(R[0])


def post(args, path, body):
    """POSTs JSON to gradserve; an error answer stops the script with its message and field."""
    headers = {"Content-Type": "application/json"}
    if args.token:
        headers["Authorization"] = "Bearer " + args.token
    req = urllib.request.Request(args.url + path, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        err = json.load(e).get("error", {})
        sys.exit(f"{path}: HTTP {e.code} {err.get('code')}: {err.get('message')} "
                 f"(field {err.get('field')})")


def states(rng, n):
    return [[1.0, rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(n)]


def q_values(xs):
    return [[sum(r * x for r, x in zip(ra, xv)) for ra in R] for xv in xs]


def softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--token", default=None, help="bearer token, if the server wants one")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=8.0)
    ap.add_argument("--lr-alpha", type=float, default=0.05)
    ap.add_argument("--target-entropy", type=float, default=0.5, help="nats (log 4 = 1.39 is uniform)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    W = [[0.0] * N for _ in range(K)]
    b = [0.0] * K
    log_alpha = 0.0
    for step in range(args.steps + 1):
        xs = states(rng, args.batch)
        body = {"head": {"features": xs, "weight": W, "bias": b}, "q": q_values(xs),
                "alpha": math.exp(log_alpha), "target_entropy": args.target_entropy}
        out = post(args, "/v1/sac/discrete/actor", body)
        gw, gb = out["grad"]["head"]["weight"], out["grad"]["head"]["bias"]
        for a in range(K):
            for j in range(N):
                W[a][j] -= args.lr * gw[a][j]
            b[a] -= args.lr * gb[a]
        log_alpha -= args.lr_alpha * out["grad_log_alpha"]
        if step % 50 == 0:
            loss = sum(out["loss"]) / len(out["loss"])
            ent = sum(out["entropy"]) / len(out["entropy"])
            print(f"step {step:4d}  actor loss {loss:+.4f}  entropy {ent:.3f}  "
                  f"alpha {math.exp(log_alpha):.4f}")

    # New states: the learned policy against the best action and against exp(q / alpha).
    xs = states(random.Random(args.seed + 1000), 1000)
    qs = q_values(xs)
    alpha = math.exp(log_alpha)
    target = post(args, "/v1/sac/discrete/policy", {"q": qs, "alpha": alpha})["probs"]
    right = kl = 0.0
    for xv, qv, pt in zip(xs, qs, target):
        p = softmax([sum(w * x for w, x in zip(W[a], xv)) + b[a] for a in range(K)])
        right += max(range(K), key=lambda a: p[a]) == max(range(K), key=lambda a: qv[a])
        kl += sum(t * (math.log(t) - math.log(max(pa, 1e-300))) for t, pa in zip(pt, p) if t > 0)
    right, kl = right / len(xs), kl / len(xs)
    print(f"on 1000 new states: greedy action right {100 * right:.1f} %, "
          f"KL(Boltzmann || policy) {kl:.4f} nats, alpha {alpha:.4f}")
    if args.check and not (right >= 0.95 and kl < 0.02):
        sys.exit("sac_bandit: the policy did not learn (want >= 95 % right and KL < 0.02)")


if __name__ == "__main__":
    main()
