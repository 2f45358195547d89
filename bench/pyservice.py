# pyservice.py - the reference service gradserve is benchmarked against: Flask + PyTorch autograd (float64), run by gunicorn.
"""What an ML engineer would write instead of gradserve, for the two benchmarked endpoints.

Run (bench-service.sh does this; one sync worker per core, one torch thread per worker):
    /usr/bin/python3 -m gunicorn --chdir bench -w 2 -k sync -b 127.0.0.1:PORT pyservice:app

POST /v1/sac/discrete/actor  exact estimator: logits [B][K], q [B][K], alpha
    -> {"estimator": "exact", "loss": [B], "entropy": [B], "grad": {"logits": [B][K]}}
POST /v1/entropy             tanh_normal, reparam: distribution {type, loc, log_scale},
                             samples M, seed
    -> {"estimator": "reparam", "samples", "seed", "entropy": [B],
        "grad": {"loc", "log_scale"}, "stderr": {"entropy", "grad": {"loc", "log_scale"}}}

Inputs may be nested lists or base64 tensors {"dtype", "shape", "data"} (API.md §0);
"output": "base64" returns every array as a float64 tensor object. Only what the benchmark
sends is supported (2-D batches, no low/high, no scale); anything else is a 400.
"""
import base64
import math

import numpy as np
import torch
import torch.nn.functional as F
from flask import Flask, jsonify, request

# One intra-op thread per worker: gunicorn runs one worker per core, so more threads would
# only oversubscribe the cores.
torch.set_num_threads(1)

app = Flask(__name__)

_DTYPES = {"float64": "<f8", "float32": "<f4", "int32": "<i4", "int64": "<i8"}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG2 = math.log(2.0)


class BadRequest(Exception):
    pass


@app.errorhandler(BadRequest)
def _bad_request(e):
    return jsonify(error={"code": "invalid_argument", "message": str(e)}), 400


def to_tensor(v, name):
    """A float64 tensor from nested lists or a base64 tensor object."""
    if isinstance(v, dict):
        try:
            raw = base64.b64decode(v["data"])
            a = np.frombuffer(raw, dtype=_DTYPES[v["dtype"]]).reshape(v["shape"])
        except (KeyError, ValueError, TypeError) as e:
            raise BadRequest("`%s`: bad tensor object (%s)" % (name, e))
        return torch.from_numpy(a.astype(np.float64))  # astype copies: frombuffer is read-only
    t = torch.tensor(v, dtype=torch.float64)
    if t.dim() != 2:
        raise BadRequest("`%s` must be [B][n]" % name)
    return t


def out(t, b64):
    t = t.detach()
    if b64:
        a = np.ascontiguousarray(t.numpy(), dtype="<f8")
        return {"dtype": "float64", "shape": list(a.shape),
                "data": base64.b64encode(a.tobytes()).decode("ascii")}
    return t.tolist()


@app.post("/v1/sac/discrete/actor")
def sac_discrete_actor():
    body = request.get_json(force=True)
    b64 = body.get("output", "json") == "base64"
    logits = to_tensor(body["logits"], "logits").requires_grad_(True)
    q = to_tensor(body["q"], "q")
    alpha = float(body["alpha"])
    if q.shape != logits.shape:
        raise BadRequest("`q` must have the shape of `logits`")
    # L_b = sum_k p_k (alpha log p_k - Q_k)  (MATH.md §6); rows are independent, so the
    # gradient of sum_b L_b is every row's own gradient.
    logp = F.log_softmax(logits, dim=-1)
    p = logp.exp()
    loss = (p * (alpha * logp - q)).sum(-1)
    entropy = -(p * logp).sum(-1)
    loss.sum().backward()
    return jsonify({"estimator": "exact", "loss": out(loss, b64),
                    "entropy": out(entropy, b64), "grad": {"logits": out(logits.grad, b64)}})


@app.post("/v1/entropy")
def entropy():
    body = request.get_json(force=True)
    b64 = body.get("output", "json") == "base64"
    dist = body["distribution"]
    if dist.get("type") != "tanh_normal" or body.get("estimator", "reparam") not in ("reparam", "auto"):
        raise BadRequest("this service only does tanh_normal with the reparam estimator")
    M = int(body.get("samples", 64))
    seed = int(body.get("seed", 0))
    loc = to_tensor(dist["loc"], "distribution.loc")
    log_scale = to_tensor(dist["log_scale"], "distribution.log_scale")
    B, D = loc.shape
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(B, M, D, generator=g, dtype=torch.float64)
    # stderr is computed, from per-sample terms: each sample gets its own copy of its row's
    # parameters (a [B][M][D] leaf), so one backward pass yields every per-sample gradient
    # g_m = -d log p(a_m)/d theta; grad is their mean over m and stderr their sample std
    # (M-1) / sqrt(M), as MATH.md §1 defines it.
    mu = loc[:, None, :].expand(B, M, D).clone().requires_grad_(True)
    rho = log_scale[:, None, :].expand(B, M, D).clone().requires_grad_(True)
    sigma = rho.exp()
    u = mu + sigma * eps
    # log N(u; mu, sigma) - log(1 - tanh(u)^2), with the stable 2 (log 2 - u - softplus(-2u)).
    log_normal = -0.5 * ((u - mu) / sigma) ** 2 - rho - _HALF_LOG_2PI
    log_jac = 2.0 * (_LOG2 - u - F.softplus(-2.0 * u))
    logp = (log_normal - log_jac).sum(-1)           # [B][M]
    (-logp).sum().backward()                         # per-sample terms in mu.grad, rho.grad
    terms_h = -logp.detach()
    sq = math.sqrt(M)

    def mean_se(t):
        return t.mean(1), (t.std(1, unbiased=True) / sq if M >= 2 else None)

    h, h_se = mean_se(terms_h)
    g_loc, g_loc_se = mean_se(mu.grad)
    g_ls, g_ls_se = mean_se(rho.grad)
    resp = {"estimator": "reparam", "samples": M, "seed": seed, "entropy": out(h, b64),
            "grad": {"loc": out(g_loc, b64), "log_scale": out(g_ls, b64)}}
    if M >= 2:
        resp["stderr"] = {"entropy": out(h_se, b64),
                          "grad": {"loc": out(g_loc_se, b64), "log_scale": out(g_ls_se, b64)}}
    return jsonify(resp)


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
