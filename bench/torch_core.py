# torch_core.py - the PyTorch peer of bench_core.c: the same kernels with autograd on one thread, float64 and float32 (make bench-core).
"""Times, for each core kernel of bench_core.c, the same computation written
the way an ML engineer writes it in PyTorch (autograd for every gradient),
on one thread, in float64 and float32, and prints tab-separated lines:

    kernel  B  dtype  rows_per_s  reps

The inputs are the closed forms of bench_core.c (off + amp sin(freq i +
phase)), so that `--check FILE` can compare torch's float64 outputs with the
C driver's `--check` dump (FILE) value by value. In the check, the noise is
bench_core's given eps and the score estimator's actions are the ones the C
core drew; the timed runs draw their own noise (torch.randn) and actions
(torch.distributions), as the C kernels generate theirs.

The torch side returns no standard errors (the C kernels compute them for
every M >= 2 estimator: a little more work on the C side)."""
import argparse
import math
import sys
import time

import torch
import torch.nn.functional as F
from torch.distributions import Categorical, Normal

K, D, M = 18, 6, 16
ALPHA = 0.2
LOG2 = math.log(2.0)

# Argument validation of torch.distributions checks every parameter on each
# construction; production training code commonly turns it off, and so do
# we, so that torch is measured at its fastest.
torch.distributions.Distribution.set_default_validate_args(False)


def fill(n, off, amp, freq, phase):
    i = torch.arange(n, dtype=torch.float64)
    return off + amp * torch.sin(freq * i + phase)


def fill_actions(n, k):
    i = torch.arange(n, dtype=torch.int64)
    return (7 * i + torch.div(i, 3, rounding_mode="floor")) % k


def make_inputs(B):
    """Inputs of B rows in float64, laid out as bench_core.c's."""
    return {
        "logits": fill(B * K, 0.0, 3.0, 0.37, 1.0).view(B, K),
        "qk": fill(B * K, 1.0, 2.0, 0.71, 2.0).view(B, K),
        "loc": fill(B * D, 0.0, 0.8, 0.53, 0.5).view(B, D),
        "lsc": fill(B * D, -0.5, 0.6, 0.29, 1.5).view(B, D),
        "qm": fill(B * M, 0.5, 1.5, 0.43, 0.25).view(B, M),
        "act": fill_actions(B * M, K).view(B, M),
        "dq_da": fill(B * M * D, 0.0, 1.0, 0.61, 0.75).view(B, M, D),
        "grad_x": fill(B * M * D, 0.0, 1.0, 0.83, 2.5).view(B, M, D),
        "x_in": fill(B * M * D, 0.0, 1.5, 0.19, 0.1).view(B, M, D),
        "eps": fill(B * M * D, 0.0, 1.3, 0.97, 0.2).view(B, M, D),
    }


def leaf(t, dtype):
    return t.to(dtype).clone().requires_grad_(True)


def loo(v):
    """v minus the mean of the other samples (last axis)."""
    n = v.shape[-1]
    return n / (n - 1) * (v - v.mean(-1, keepdim=True))


def tanh_log_prob(mu, log_std, eps):
    """u, a = tanh u and log p(a) summed over D, through the path."""
    std = log_std.exp().unsqueeze(1)
    mu_ = mu.unsqueeze(1)
    u = mu_ + std * eps
    a = torch.tanh(u)
    logp = Normal(mu_, std).log_prob(u) - 2.0 * (LOG2 - u - F.softplus(-2.0 * u))
    return a, logp.sum(-1)


# ---- the kernels: make(inputs, dtype, check) -> (step, outputs) ----------------
# step() runs one full computation (forward, backward) and returns the
# outputs, a dict of tensors; every input the kernel differentiates is a leaf
# whose .grad is reset before each step.


def k_entropy_exact_cat(x, dt, chk):
    z = leaf(x["logits"], dt)

    def step():
        z.grad = None
        logp = F.log_softmax(z, -1)
        h = -(logp.exp() * logp).sum(-1)
        h.sum().backward()
        return {"entropy": h.detach(), "grad": z.grad}

    return step


def k_entropy_score_cat(x, dt, chk):
    z = leaf(x["logits"], dt)

    def step():
        z.grad = None
        dist = Categorical(logits=z)
        k = chk["actions"].T if chk else dist.sample((M,))  # M x B
        lp = dist.log_prob(k).T  # B x M
        h = -lp.mean(-1)
        # score estimator with the leave-one-out baseline:
        # g = -mean_m (l_m - mean of the others) dl_m/dz
        surrogate = -(loo(lp.detach()) * lp).mean(-1)
        surrogate.sum().backward()
        return {"entropy": h.detach(), "grad": z.grad}

    return step


def k_entropy_reparam_tanh(x, dt, chk):
    mu, ls = leaf(x["loc"], dt), leaf(x["lsc"], dt)
    B = mu.shape[0]
    eps_given = x["eps"].to(dt) if chk else None

    def step():
        mu.grad = ls.grad = None
        eps = eps_given if chk else torch.randn(B, M, D, dtype=dt)
        a, logp = tanh_log_prob(mu, ls, eps)
        h = -logp.mean(-1)
        h.sum().backward()
        return {"entropy": h.detach(), "grad_loc": mu.grad, "grad_log_scale": ls.grad}

    return step


def k_sac_discrete_exact(x, dt, chk):
    z, q = leaf(x["logits"], dt), x["qk"].to(dt)

    def step():
        z.grad = None
        p = F.softmax(z, -1)
        logp = F.log_softmax(z, -1)
        loss = (p * (ALPHA * logp - q)).sum(-1)
        loss.sum().backward()
        with torch.no_grad():
            h = -(p * logp).sum(-1)
        return {"loss": loss.detach(), "entropy": h, "grad": z.grad}

    return step


def k_sac_discrete_sampled(x, dt, chk):
    z, q, act = leaf(x["logits"], dt), x["qm"].to(dt), x["act"]

    def step():
        z.grad = None
        logp = F.log_softmax(z, -1)
        lp = logp.gather(-1, act)  # B x M
        t = ALPHA * lp - q
        # score estimator of dL/dz with the leave-one-out baseline on t
        surrogate = (loo(t.detach()) * lp).mean(-1)
        surrogate.sum().backward()
        with torch.no_grad():
            h = -(logp.exp() * logp).sum(-1)
        return {"loss": t.detach().mean(-1), "entropy": h, "grad": z.grad}

    return step


def k_sac_policy(x, dt, chk):
    q = x["qk"].to(dt)

    def step():
        with torch.no_grad():
            zq = q / ALPHA
            logp = F.log_softmax(zq, -1)
            p = logp.exp()
            h = -(p * logp).sum(-1)
            v = ALPHA * torch.logsumexp(zq, -1)
        return {"probs": p, "log_probs": logp, "entropy": h, "value": v}

    return step


def k_sac_continuous(x, dt, chk):
    mu, ls = leaf(x["loc"], dt), leaf(x["lsc"], dt)
    dq, q = x["dq_da"].to(dt), x["qm"].to(dt)
    B = mu.shape[0]
    eps_given = x["eps"].to(dt) if chk else None

    def step():
        mu.grad = ls.grad = None
        eps = eps_given if chk else torch.randn(B, M, D, dtype=dt)
        a, logp = tanh_log_prob(mu, ls, eps)
        surrogate = ALPHA * logp - (dq.detach() * a).sum(-1)
        surrogate.mean(-1).sum().backward()
        with torch.no_grad():
            loss = (ALPHA * logp - q).mean(-1)
            h = -logp.mean(-1)
        return {"loss": loss, "entropy": h, "log_prob": logp.detach(),
                "actions": a.detach(), "grad_loc": mu.grad, "grad_log_scale": ls.grad}

    return step


def k_reparam_normal(x, dt, chk):
    mu, ls = leaf(x["loc"], dt), leaf(x["lsc"], dt)
    gx = x["grad_x"].to(dt)
    B = mu.shape[0]
    eps_given = x["eps"].to(dt) if chk else None

    def step():
        mu.grad = ls.grad = None
        eps = eps_given if chk else torch.randn(B, M, D, dtype=dt)
        mu_, std = mu.unsqueeze(1), ls.exp().unsqueeze(1)
        xs = mu_ + std * eps
        (gx * xs).sum(-1).mean(-1).sum().backward()
        with torch.no_grad():
            lp = Normal(mu_, std).log_prob(xs).sum(-1)
        return {"x": xs.detach(), "log_prob": lp, "grad_loc": mu.grad,
                "grad_log_scale": ls.grad}

    return step


def k_log_prob_normal(x, dt, chk):
    mu, ls = leaf(x["loc"], dt), leaf(x["lsc"], dt)
    xs = x["x_in"].to(dt)

    def step():
        mu.grad = ls.grad = None
        lp = Normal(mu.unsqueeze(1), ls.exp().unsqueeze(1)).log_prob(xs).sum(-1)
        lp.sum().backward()
        return {"log_prob": lp.detach(), "grad_loc": mu.grad, "grad_log_scale": ls.grad}

    return step


KERNELS = {
    "entropy_exact_cat": k_entropy_exact_cat,
    "entropy_score_cat_M16": k_entropy_score_cat,
    "entropy_reparam_tanh_M16": k_entropy_reparam_tanh,
    "sac_discrete_exact": k_sac_discrete_exact,
    "sac_discrete_sampled_M16": k_sac_discrete_sampled,
    "sac_policy": k_sac_policy,
    "sac_continuous_M16": k_sac_continuous,
    "reparam_normal_M16": k_reparam_normal,
    "log_prob_normal_M16": k_log_prob_normal,
}


# ---- timing -------------------------------------------------------------------


# This thread's CPU time (default; torch runs every op on the calling thread
# with set_num_threads(1), and time spent elsewhere would not be counted
# against torch) or wall time.
clock = time.thread_time


def time_reps(step, reps):
    t0 = clock()
    for _ in range(reps):
        step()
    return clock() - t0


def calibrate(step, min_time):
    """The repetition count of one point: grown until a run takes min_time."""
    step()
    step()  # warm-up
    reps = 1
    while True:
        t = time_reps(step, reps)
        if t >= min_time:
            return reps
        grow = min(100.0, max(2.0, 1.2 * min_time / t if t > 0 else 100.0))
        reps = int(reps * grow) + 1


# ---- check against bench_core --check --------------------------------------------


def check(path):
    """Compares torch float64 outputs with bench_core --check's dump."""
    c, B = {}, None
    with open(path) as f:
        for line in f:
            if line.startswith("# rows"):
                B = int(line.split()[2])
                continue
            name, field, i, v = line.rstrip("\n").split("\t")
            c.setdefault(name, {}).setdefault(field, {})[int(i)] = float(v)
    ok = True
    for name, make in KERNELS.items():
        fields = c[name]
        x = make_inputs(B)
        chk = {}
        if "actions" in fields and name == "entropy_score_cat_M16":
            a = fields.pop("actions")
            chk["actions"] = torch.tensor([int(a[i]) for i in range(len(a))]).view(B, M)
        out = make(x, torch.float64, chk or {"given": True})()
        worst = 0.0
        for field, vals in fields.items():
            t = out[field].reshape(-1)
            cv = torch.tensor([vals[i] for i in range(len(vals))], dtype=torch.float64)
            if t.numel() != cv.numel():
                print(f"check {name}.{field}: size {t.numel()} vs C {cv.numel()}")
                ok = False
                continue
            err = ((t - cv).abs() / (1.0 + cv.abs())).max().item()
            worst = max(worst, err)
        status = "ok" if worst < 1e-9 else "MISMATCH"
        ok = ok and worst < 1e-9
        print(f"check\t{name}\t{status}\tmax |C - torch| / (1 + |C|) = {worst:.1e}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--min-time", type=float, default=0.2)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--sizes", default="1,256,4096,65536")
    ap.add_argument("--kernels", default=",".join(KERNELS))
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--clock", choices=("thread", "wall"), default="thread")
    ap.add_argument("--check", metavar="FILE", help="compare with bench_core --check output")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    global clock
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    if args.check:
        sys.exit(0 if check(args.check) else 1)
    sizes = [int(s) for s in args.sizes.split(",")]
    inputs = {B: make_inputs(B) for B in sizes}
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread, "
          f"{'thread CPU' if args.clock == 'thread' else 'wall'} clock, "
          f"min {args.min_time:.2f} s per run, best of {args.trials} spread over the run", flush=True)
    # Every point's best of --trials runs, the trials spread over the whole
    # run (all points once, then all again, ...), as bench_core does: this
    # machine has spells of some seconds at a fraction of its speed.
    points = []
    for name in args.kernels.split(","):
        for B in sizes:
            for dts in args.dtypes.split(","):
                step = KERNELS[name](inputs[B], getattr(torch, dts), None)
                points.append([name, B, dts, step, calibrate(step, args.min_time), float("inf")])
    for _ in range(args.trials):
        for p in points:
            p[5] = min(p[5], time_reps(p[3], p[4]))
    for name, B, dts, _, reps, best in points:
        print(f"{name}\t{B}\t{dts}\t{B * reps / best:.6g}\t{reps}", flush=True)


if __name__ == "__main__":
    main()
