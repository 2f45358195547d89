#!/usr/bin/python3
"""torch_crosscheck.py - a black-box acceptance check of gradserve against PyTorch float64 autograd.

It starts the server on 127.0.0.1 (a free port), drives every computing endpoint of
../shared/API.md over HTTP and compares each numeric answer with an independent float64
computation of the formula of MATH.md (autograd for every derivative), using the noise and
actions the server reports (/v1/sample with the same seed).  It also checks: replay by seed
(byte-identical), which of `seed`, `samples`, `stderr` a response carries, that the noise
of (seed, b, m) does not depend on the batch size or M, single-row (1-D) requests, base64
tensors in and out, /v1/batch items against the same requests on their own, linear heads
(both reductions, with and without bias), a few statistics of the Monte Carlo estimators
(mean over many independent rows within 4 reported standard errors of the exact value) and
the error contract (status, code, field).

Usage:
    /usr/bin/python3 tests/torch_crosscheck.py [path/to/gradserve] [--url http://host:port] [-v]

Without --url it starts the given binary (default build/gradserve) itself on a free port of
127.0.0.1, plus a second one with one HTTP thread and one worker (to check that the thread count
does not change an answer), and stops both at the end.  --only NAME runs the check groups whose
function name contains NAME; -v lists every passed check.  Exit status 0 when every check passed,
1 otherwise.  About 25 s.

The per-endpoint checks run in five regimes: B = 3, 11 (past the 8-row SIMD lanes, with a tail),
19 with hard parameters (log_scale down to -4, saturated tanh), 600 with M = 16 (the worker pool,
and heads over more than one 256-row GEMM block) and 9 with extreme parameters (logits ~ ±400,
loc ~ ±12, log_scale in [-9, 3]).  Tolerance: 1e-10 relative plus 1e-12 of the array's largest
magnitude (at least 1e-12 absolute); draws inverted through atanh get 1e-7.

Two conventions that API.md leaves open are pinned by what the checks expect (and the server does):
the standard error of a head's `weight`/`bias` gradient treats rows as independent,
r·sqrt(Σ_b se(G_b)² F_b²), and that of `alpha_loss` is α·sqrt(Σ_b se(H_b)²)/B.
"""
import argparse
import base64
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.parse

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
RTOL = 1e-10
# the regime of the per-endpoint checks (main runs them twice): batch rows, samples, hard parameters
NB, MS, HARD, KC = 3, 9, False, 4  # KC: categories of the categorical checks
LOG2PI = math.log(2 * math.pi)
VERBOSE = False

# --------------------------------------------------------------------------------------------
# bookkeeping


class Results:
    def __init__(self):
        self.passed = {}
        self.failed = []

    def ok(self, name, cond, detail=""):
        if cond:
            self.passed[name] = self.passed.get(name, 0) + 1
        else:
            self.failed.append((name, detail))
            print("FAIL %s: %s" % (name, detail[:3000]), flush=True)
        return cond


R = Results()


def jdump(o):
    return json.dumps(o, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# HTTP


class Client:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def _conn(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return self.conn

    def request(self, method, path, body=None, headers=None):
        if body is not None and not isinstance(body, (bytes, str)):
            body = jdump(body)
        if isinstance(body, str):
            body = body.encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        for attempt in range(3):
            try:
                c = self._conn()
                c.request(method, path, body=body, headers=h)
                r = c.getresponse()
                raw = r.read()
                hd = {k.lower(): v for k, v in r.getheaders()}
                if hd.get("connection", "").lower() == "close":
                    self.close()
                return r.status, hd, raw
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
                time.sleep(0.1)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


C = None


def post(path, body, headers=None):
    """POST path body -> (status, parsed json (tensors decoded), raw bytes)."""
    st, _, raw = C.request("POST", path, body, headers)
    try:
        js = json.loads(raw)
    except ValueError:
        js = None
    return st, js, raw


def call(path, body, name):
    """POST, require 200, return parsed body with base64 tensors decoded to numpy."""
    st, js, raw = post(path, body)
    if not R.ok(name + " status 200", st == 200, "status %s body %s\nrequest %s" % (st, raw[:600], jdump(body)[:1500])):
        return None
    return decode(js)


# --------------------------------------------------------------------------------------------
# tensors

DT = {"float64": "<f8", "float32": "<f4", "int32": "<i4", "int64": "<i8"}


def tensor(arr, dtype):
    a = np.ascontiguousarray(np.asarray(arr).astype(DT[dtype]))
    return {"dtype": dtype, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def is_tensor(o):
    return isinstance(o, dict) and set(o) == {"dtype", "shape", "data"}


def decode(o):
    if is_tensor(o):
        a = np.frombuffer(base64.b64decode(o["data"]), dtype=DT[o["dtype"]])
        return a.reshape(o["shape"]).astype(np.float64 if o["dtype"].startswith("float") else np.int64)
    if isinstance(o, dict):
        return {k: decode(v) for k, v in o.items()}
    return o


def enc(arr, single=False, mode="json"):
    """A batch-indexed request array: drop the batch axis when single, maybe as a tensor."""
    a = np.asarray(arr)
    if single:
        a = a[0]
    if mode == "json":
        return a.tolist()
    return tensor(a, mode)


# --------------------------------------------------------------------------------------------
# comparison


def tonp(x):
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return np.asarray(x, dtype=np.float64)


def close_struct(name, got, exp, rtol=RTOL, atol_rel=1e-12, ctx=""):
    """exp: nested dict of arrays / numbers; got: the server's (decoded) answer.  Keys must match."""
    errs = []

    def walk(g, e, path):
        if isinstance(e, dict):
            if not isinstance(g, dict):
                errs.append("%s: expected an object, got %s" % (path, str(g)[:200]))
                return
            if set(g) != set(e):
                errs.append("%s: keys %s, expected %s" % (path, sorted(g), sorted(e)))
            for k in e:
                if k in g:
                    walk(g[k], e[k], path + "." + k)
            return
        ee = tonp(e).astype(np.float64)
        try:
            gg = np.asarray(g, dtype=np.float64)
        except (TypeError, ValueError):
            errs.append("%s: not numeric: %s" % (path, str(g)[:200]))
            return
        if gg.shape != ee.shape:
            errs.append("%s: shape %s, expected %s" % (path, gg.shape, ee.shape))
            return
        if ee.size == 0:
            return
        scale = max(1.0, float(np.max(np.abs(ee))))
        tol = rtol * np.abs(ee) + atol_rel * scale
        bad = ~(np.abs(gg - ee) <= tol)
        if bad.any():
            i = np.unravel_index(np.argmax(np.abs(gg - ee) - tol), ee.shape)
            errs.append("%s%s: got %r, expected %r (max |diff| %.3g; %d of %d elements off)"
                        % (path, list(i), float(gg[i]), float(ee[i]), float(np.max(np.abs(gg - ee))),
                           int(bad.sum()), ee.size))

    walk(got, exp, "")
    return R.ok(name, not errs, "; ".join(errs) + ("\n   " + ctx if ctx else ""))


def keys_are(name, resp, required, optional=()):
    if resp is None:
        return False
    ks = set(resp)
    ok = set(required) <= ks and ks <= set(required) | set(optional)
    return R.ok(name, ok, "keys %s, expected %s (+ optional %s)" % (sorted(ks), sorted(required), sorted(optional)))


def drop_batch(s, path=()):
    """Single-row form of an expected structure: drop the batch axis of batch-indexed arrays."""
    if isinstance(s, dict):
        return {k: drop_batch(v, path + (k,)) for k, v in s.items()}
    if isinstance(s, str) or (path and path[-1] in ("alpha_loss", "grad_log_alpha")):
        return s
    if "head" in path and path[-1] in ("weight", "bias"):
        return s  # reduced over the batch: never batch-indexed
    a = tonp(s)
    if a.ndim == 0:
        return a
    return a[0]


# --------------------------------------------------------------------------------------------
# distributions: request JSON and the torch forward


class Dist:
    """A batch of B distributions, with its parameters as numpy, its request JSON and its torch forward.

    param: 'log_scale' | 'scale' (continuous, direct), 'logits' (categorical, direct) or 'head'.
    """

    def __init__(self, kind, B, D, rng, param=None, bias=True, reduction=None, bounds=False, nf=3,
                 loc_scale=1.0, rho_range=(-1.0, 0.5)):
        self.kind, self.B, self.D = kind, B, D
        self.param = param or ("logits" if kind == "categorical" else "log_scale")
        self.bias, self.reduction, self.bounds = bias, reduction, bounds
        self.low = self.high = None
        if self.param == "head":
            self.F = rng.normal(size=(B, nf))
            if kind == "categorical":
                self.W = rng.normal(size=(D, nf)) * 0.7
                self.b = rng.normal(size=D) * 0.3 if bias else None
            else:
                self.Wl = rng.normal(size=(D, nf)) * 0.5
                self.bl = rng.normal(size=D) * 0.3 if bias else None
                self.Ws = rng.normal(size=(D, nf)) * 0.2
                self.bs = rng.normal(size=D) * 0.2 - 0.4 if bias else None
        elif kind == "categorical":
            self.z = rng.normal(size=(B, D)) * {0: 1.5, 1: 6.0, 2: 400.0}[int(HARD)]
        else:
            if HARD == 2:
                loc_scale, rho_range = 12.0, (-9.0, 3.0)
            elif HARD:
                loc_scale, rho_range = 2.5, (-4.0, 1.5)
            self.mu = rng.normal(size=(B, D)) * loc_scale
            self.rho = rng.uniform(*rho_range, size=(B, D))
            if self.param == "scale":
                self.sig = np.exp(self.rho)
        if bounds:
            self.low = -rng.uniform(0.5, 2.0, size=D)
            self.high = self.low + rng.uniform(0.5, 3.0, size=D)
        self.c = np.zeros(D) if self.low is None else (self.high + self.low) / 2
        self.s = np.ones(D) if self.low is None else (self.high - self.low) / 2

    # ---- request JSON
    def json(self, single=False, mode="json"):
        d = {"type": self.kind}
        e = lambda a: enc(a, single, mode)
        en = lambda a: a.tolist() if mode == "json" else tensor(a, mode)  # never batch-indexed
        if self.param == "head":
            if self.kind == "categorical":
                h = {"features": e(self.F), "weight": en(self.W)}
                if self.bias:
                    h["bias"] = en(self.b)
            else:
                lo = {"weight": en(self.Wl)}
                ls = {"weight": en(self.Ws)}
                if self.bias:
                    lo["bias"] = en(self.bl)
                    ls["bias"] = en(self.bs)
                h = {"features": e(self.F), "loc": lo, "log_scale": ls}
            d["head"] = h
            if self.reduction:
                d["reduction"] = self.reduction
        elif self.kind == "categorical":
            d["logits"] = e(self.z)
        else:
            d["loc"] = e(self.mu)
            if self.param == "scale":
                d["scale"] = e(self.sig)
            else:
                d["log_scale"] = e(self.rho)
        if self.low is not None:
            d["low"] = en(self.low)
            d["high"] = en(self.high)
        return d

    def top_head_json(self, single=False):
        """For /v1/sac/discrete/actor: head and reduction at the top level."""
        d = self.json(single)
        out = {"head": d["head"]}
        if "reduction" in d:
            out["reduction"] = d["reduction"]
        return out

    # ---- torch
    def leaves(self):
        t = lambda a: torch.tensor(a, requires_grad=True)
        if self.param == "head":
            L = {"F": t(self.F)}
            if self.kind == "categorical":
                L["W"] = t(self.W)
                if self.bias:
                    L["b"] = t(self.b)
            else:
                L["Wl"], L["Ws"] = t(self.Wl), t(self.Ws)
                if self.bias:
                    L["bl"], L["bs"] = t(self.bl), t(self.bs)
            return L
        if self.kind == "categorical":
            return {"z": t(self.z)}
        L = {"mu": t(self.mu)}
        if self.param == "scale":
            L["sig"] = t(self.sig)
        else:
            L["rho"] = t(self.rho)
        return L

    def forward(self, L):
        """-> dict: categorical {'z'}, continuous {'mu','rho','sig'} (torch, per row)."""
        if self.param == "head":
            if self.kind == "categorical":
                z = L["F"] @ L["W"].T
                if self.bias:
                    z = z + L["b"]
                return {"z": z}
            mu = L["F"] @ L["Wl"].T
            rho = L["F"] @ L["Ws"].T
            if self.bias:
                mu, rho = mu + L["bl"], rho + L["bs"]
            return {"mu": mu, "rho": rho, "sig": torch.exp(rho)}
        if self.kind == "categorical":
            return {"z": L["z"]}
        if self.param == "scale":
            return {"mu": L["mu"], "rho": torch.log(L["sig"]), "sig": L["sig"]}
        return {"mu": L["mu"], "rho": L["rho"], "sig": torch.exp(L["rho"])}

    def grad(self, S, L, P):
        """Gradients of S (a scalar, the sum over rows of per-row objectives) in the response's layout."""
        if self.param == "head":
            r = 1.0 / self.B if (self.reduction or "mean") == "mean" else 1.0
            if self.kind == "categorical":
                names = [("logits",), ("head", "weight"), ("head", "features")]
                ins = [P["z"], L["W"], L["F"]]
                if self.bias:
                    names.append(("head", "bias"))
                    ins.append(L["b"])
            else:
                names = [("loc",), ("log_scale",), ("head", "loc", "weight"), ("head", "log_scale", "weight"),
                         ("head", "features")]
                ins = [P["mu"], P["rho"], L["Wl"], L["Ws"], L["F"]]
                if self.bias:
                    names += [("head", "loc", "bias"), ("head", "log_scale", "bias")]
                    ins += [L["bl"], L["bs"]]
            gs = torch.autograd.grad(S, ins, retain_graph=True, allow_unused=True)
            out = {}
            for n, g, x in zip(names, gs, ins):
                g = torch.zeros_like(x) if g is None else g
                if n[0] == "head" and n[-1] in ("weight", "bias"):
                    g = g * r
                put(out, n, g.detach().numpy().copy())
            return out
        if self.kind == "categorical":
            names, ins = [("logits",)], [L["z"]]
        elif self.param == "scale":
            names, ins = [("loc",), ("scale",)], [L["mu"], L["sig"]]
        else:
            names, ins = [("loc",), ("log_scale",)], [L["mu"], L["rho"]]
        gs = torch.autograd.grad(S, ins, retain_graph=True, allow_unused=True)
        out = {}
        for n, g, x in zip(names, gs, ins):
            put(out, n, (torch.zeros_like(x) if g is None else g).detach().numpy().copy())
        return out

    def head_se(self, se):
        """Standard errors of a head's weight and bias gradients from the rows' own standard errors.

        The rows' noise is independent, so Var(r Σ_b G_bk F_bn) = r² Σ_b Var(G_bk) F_bn²."""
        r = 1.0 / self.B if (self.reduction or "mean") == "mean" else 1.0
        out = {}
        pairs = [(("logits",), ("head",))] if self.kind == "categorical" else \
            [(("loc",), ("head", "loc")), (("log_scale",), ("head", "log_scale"))]
        for pp, hp in pairs:
            v = se[pp] ** 2  # [B, P]
            out[hp + ("weight",)] = r * np.sqrt(v.T @ self.F ** 2)
            if self.bias:
                out[hp + ("bias",)] = r * np.sqrt(v.sum(0))
        return out

    def numpy_params(self):
        P = self.forward(self.leaves())
        return {k: v.detach().numpy() for k, v in P.items()}


def put(d, path, v):
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = v


def flat(d, path=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from flat(v, path + (k,))
    else:
        yield path, d


def unflat(items):
    out = {}
    for p, v in items:
        put(out, p, v)
    return out


def mc(dist, term_fn, M, with_terms=False):
    """Estimate = mean_m of the per-sample gradient terms ∂T[:, m]/∂θ, and its stderr std(terms)/sqrt(M).

    term_fn(P) -> T [B, M]: a surrogate whose gradient (per row) is the sample's term.
    """
    L = dist.leaves()
    P = dist.forward(L)
    T = term_fn(P)
    terms = [dict(flat(dist.grad(T[:, m].sum(), L, P))) for m in range(M)]
    est, se, stack = [], [], {}
    for p in terms[0]:
        st = np.stack([t[p] for t in terms])
        stack[p] = st
        est.append((p, st.mean(0)))
        if M >= 2:
            se.append((p, st.std(0, ddof=1) / math.sqrt(M)))
    if M >= 2 and dist.param == "head":
        se = dict(se)
        se.update(dist.head_se(se))
        se = list(se.items())
    if with_terms:
        return unflat(est), (unflat(se) if M >= 2 else None), stack
    return unflat(est), (unflat(se) if M >= 2 else None)


def sem(x, axis=-1):
    x = tonp(x)
    return x.std(axis, ddof=1) / math.sqrt(x.shape[axis])


# ---- log-densities (torch, float64)


def log1mt2(u):
    """log(1 - tanh(u)^2), stably (MATH.md §4)."""
    x = -2 * u  # softplus(x) = max(x, 0) + log1p(exp(-|x|)); torch's softplus drops exp(-x) past x = 20
    return 2 * (math.log(2) - u - (torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))))


def normal_lp(x, mu, rho, sig):
    """x [B,M,D]; parameters [B,D] -> [B,M]."""
    zz = (x - mu[:, None, :]) / sig[:, None, :]
    return (-0.5 * zz ** 2 - rho[:, None, :] - 0.5 * LOG2PI).sum(-1)


def lp_fixed(dist, P, x):
    """log p(x) with x held fixed: categorical x int [B,M]; continuous [B,M,D] (tanh: actions)."""
    if dist.kind == "categorical":
        lsm = torch.log_softmax(P["z"], -1)
        return torch.gather(lsm, 1, torch.tensor(np.asarray(x), dtype=torch.int64))
    x = torch.tensor(np.asarray(x, dtype=np.float64))
    if dist.kind == "normal":
        return normal_lp(x, P["mu"], P["rho"], P["sig"])
    u = torch.atanh((x - torch.tensor(dist.c)) / torch.tensor(dist.s))
    return lp_u(dist, P, u)


def lp_u(dist, P, u):
    """tanh_normal log-density of a = c + s tanh(u), as a function of u and the parameters."""
    return normal_lp(u, P["mu"], P["rho"], P["sig"]) - log1mt2(u).sum(-1) - float(np.log(dist.s).sum())


def path(dist, P, eps):
    """x = f_θ(ε) (torch, depends on θ) and its log-density ℓ_θ(f_θ(ε)) (total derivative through x).

    Along the path (u - μ)/σ is ε identically, so the Gaussian part is written with ε: the same function,
    without the cancellation of (μ + σε) - μ that would cost digits when |μ| >> σ|ε|."""
    e = torch.tensor(np.asarray(eps, dtype=np.float64))
    u = P["mu"][:, None, :] + P["sig"][:, None, :] * e
    g = (-0.5 * e ** 2 - P["rho"][:, None, :] - 0.5 * LOG2PI).sum(-1)
    if dist.kind == "normal":
        return u, g
    a = torch.tensor(dist.c) + torch.tensor(dist.s) * torch.tanh(u)
    return a, g - log1mt2(u).sum(-1) - float(np.log(dist.s).sum())


def points(dist, eps):
    """The draws x = f(eps) as the server returns them (clipped into [low, high]) and their
    log-densities, as numpy arrays, at the distribution's own parameters."""
    x, lp = path(dist, dist.forward(dist.leaves()), eps)
    x = x.detach().numpy()
    if dist.low is not None:
        x = np.clip(x, dist.low, dist.high)
    return x, lp.detach().numpy()


def lp_eps_fixed(dist, P, eps):
    """ℓ_θ(x) with the draw x = f(ε) held fixed, where x came from the noise ε (MATH.md §4-§5a: u = μ + σε
    straight from the noise).  zz stands for (u - μ)/σ: its value is ε and its derivatives are those of
    (u - μ)/σ with u fixed (∂/∂μ = -1/σ, ∂/∂σ = -ε/σ)."""
    e = torch.tensor(np.asarray(eps, dtype=np.float64))
    mu, sig = P["mu"][:, None, :], P["sig"][:, None, :]
    zz = e * sig.detach() / sig + (mu.detach() - mu) / sig
    g = (-0.5 * zz ** 2 - P["rho"][:, None, :] - 0.5 * LOG2PI).sum(-1)
    if dist.kind == "normal":
        return g
    u = (mu + sig * e).detach()
    return g - log1mt2(u).sum(-1) - float(np.log(dist.s).sum())


def loo(v):
    """leave-one-out mean over the last axis"""
    M = v.shape[-1]
    return (v.sum(-1, keepdim=True) - v) / (M - 1)


# --------------------------------------------------------------------------------------------
# server helpers


def sample(dist, M, seed, name):
    r = call("/v1/sample", {"distribution": dist.json(), "samples": M, "seed": seed}, name + " /v1/sample")
    return r


def replay(name, path, body):
    st1, _, raw1 = post(path, body)
    st2, _, raw2 = post(path, body)
    R.ok(name + " replay byte-identical", st1 == st2 == 200 and raw1 == raw2,
         "status %s/%s, first %s / second %s" % (st1, st2, raw1[:300], raw2[:300]))


# ============================================================================================
# the checks


def check_entropy(rng):
    # ---- exact
    for kind, param, extra in [("categorical", "logits", {}), ("normal", "log_scale", {}), ("normal", "scale", {}),
                               ("categorical", "head", {"reduction": "sum"}), ("categorical", "head", {"bias": False}),
                               ("normal", "head", {}), ("normal", "head", {"bias": False, "reduction": "sum"})]:
        d = Dist(kind, NB + 1, KC + 1 if kind == "categorical" else 5, rng, param=param, **extra)
        L = d.leaves()
        P = d.forward(L)
        if kind == "categorical":
            lp = torch.log_softmax(P["z"], -1)
            H = -(lp.exp() * lp).sum(-1)
        else:
            H = (0.5 * (LOG2PI + 1) + P["rho"]).sum(-1)
        exp = {"estimator": None, "entropy": H.detach().numpy(), "grad": d.grad(H.sum(), L, P)}
        tag = "entropy exact %s/%s%s" % (kind, param, extra)
        for est in ("auto", "exact"):
            body = {"distribution": d.json(), "estimator": est}
            r = call("/v1/entropy", body, tag)
            if r:
                keys_are(tag + " fields", r, ["estimator", "entropy", "grad"])
                R.ok(tag + " estimator", r.get("estimator") == "exact", str(r.get("estimator")))
                close_struct(tag + " values", {k: r[k] for k in ("entropy", "grad") if k in r},
                             {"entropy": exp["entropy"], "grad": exp["grad"]}, ctx=jdump(body)[:600])

    # ---- Monte Carlo: score (loo / none) and reparam
    cases = [("categorical", "logits", "score", "loo", {}), ("categorical", "logits", "score", "none", {}),
             ("categorical", "head", "score", "loo", {"reduction": "sum"}),
             ("normal", "log_scale", "score", "loo", {}), ("normal", "scale", "score", "none", {}),
             ("normal", "log_scale", "reparam", None, {}), ("normal", "scale", "reparam", None, {}),
             ("normal", "head", "reparam", None, {}), ("normal", "head", "score", "loo", {"bias": False}),
             ("tanh_normal", "log_scale", "reparam", None, {}), ("tanh_normal", "scale", "reparam", None, {"bounds": True}),
             ("tanh_normal", "log_scale", "score", "loo", {"bounds": True}), ("tanh_normal", "scale", "score", "none", {}),
             ("tanh_normal", "head", "reparam", None, {"bounds": True}),
             ("tanh_normal", "head", "score", "loo", {"reduction": "sum", "bias": False}),
             ("tanh_normal", "log_scale", "auto", None, {"bounds": True})]
    for i, (kind, param, est, base, extra) in enumerate(cases):
        for M in (MS, 1) if base != "loo" else (MS,):
            d = Dist(kind, NB, KC if kind == "categorical" else 2, rng, param=param, **extra)
            seed = int(rng.integers(0, 2 ** 53))
            s = sample(d, M, seed, "entropy MC")
            if s is None:
                continue
            tag = "entropy %s %s/%s baseline=%s M=%d%s" % (est, kind, param, base, M, extra)
            if est in ("reparam", "auto"):
                eps = s["eps"]

                def T(P, eps=eps, d=d):
                    return -path(d, P, eps)[1]

                P0 = d.forward(d.leaves())
                lpv = path(d, P0, eps)[1].detach().numpy()
            else:
                def LP(P, s=s, d=d):
                    return lp_fixed(d, P, s["samples"]) if d.kind == "categorical" else lp_eps_fixed(d, P, s["eps"])

                def T(P, LP=LP, base=base):
                    lp = LP(P)
                    lv = lp.detach()
                    c = -loo(lv) if base == "loo" else 0.0
                    return -(lv + c) * lp

                lpv = LP(d.forward(d.leaves())).detach().numpy()
            g, se = mc(d, T, M)
            R.ok(tag + " /v1/sample log_prob", np.allclose(s["log_prob"], lpv, rtol=1e-10, atol=1e-12),
                 "sample log_prob %s vs torch %s" % (s["log_prob"][0], lpv[0]))
            body = {"distribution": d.json(), "estimator": est, "samples": M, "seed": seed}
            if base:
                body["baseline"] = base
            r = call("/v1/entropy", body, tag)
            if not r:
                continue
            exp = {"entropy": -lpv.mean(1), "grad": g}
            if M >= 2:
                exp["stderr"] = {"entropy": sem(lpv), "grad": se}
            keys_are(tag + " fields", r, ["estimator", "entropy", "grad", "samples", "seed"] + (["stderr"] if M >= 2 else []))
            R.ok(tag + " echo", r.get("seed") == seed and r.get("samples") == M
                 and r.get("estimator") == ("reparam" if est == "auto" else est), str({k: r.get(k) for k in ("seed", "samples", "estimator")}))
            close_struct(tag + " values", {k: r[k] for k in exp if k in r}, exp, ctx=jdump(body)[:800])
            if i % 3 == 0:
                replay(tag, "/v1/entropy", body)

    # ---- no seed: the server picks one, echoes it, and the echo replays it
    d = Dist("normal", 2, 3, rng)
    body = {"distribution": d.json(), "estimator": "score", "samples": 5}
    st, js, raw = post("/v1/entropy", body)
    if R.ok("entropy without seed echoes one", st == 200 and isinstance(js.get("seed"), int), raw[:300]):
        body["seed"] = js["seed"]
        st2, _, raw2 = post("/v1/entropy", body)
        R.ok("entropy echoed seed replays byte-identically", raw2 == raw, "%s\n%s" % (raw[:300], raw2[:300]))


def check_sample(rng):
    for kind, param, extra in [("categorical", "logits", {}), ("normal", "log_scale", {}), ("normal", "scale", {}),
                               ("tanh_normal", "log_scale", {}), ("tanh_normal", "scale", {"bounds": True}),
                               ("tanh_normal", "head", {"bounds": True}), ("categorical", "head", {"bias": False})]:
        d = Dist(kind, NB, KC if kind == "categorical" else 3, rng, param=param, **extra)
        seed = int(rng.integers(0, 2 ** 53))
        M = MS
        tag = "sample %s/%s%s" % (kind, param, extra)
        body = {"distribution": d.json(), "samples": M, "seed": seed}
        r = call("/v1/sample", body, tag)
        if not r:
            continue
        keys_are(tag + " fields", r, ["seed", "samples", "log_prob"] + (["eps"] if kind != "categorical" else []))
        R.ok(tag + " seed echoed", r.get("seed") == seed, str(r.get("seed")))
        L = d.leaves()
        P = d.forward(L)
        if kind == "categorical":
            x = np.asarray(r["samples"])
            R.ok(tag + " integer actions in range", x.shape == (NB, M) and x.min() >= 0 and x.max() < KC, str(x))
            lp = lp_fixed(d, P, x)
            close_struct(tag + " log_prob", r["log_prob"], lp)
        else:
            x, lp = path(d, P, r["eps"])
            x = x.detach().numpy()
            if d.low is not None:
                x = np.clip(x, d.low, d.high)
            close_struct(tag + " samples/log_prob", {"samples": r["samples"], "log_prob": r["log_prob"]},
                         {"samples": x, "log_prob": lp})
            if d.low is not None or kind == "tanh_normal":
                lo = d.low if d.low is not None else -1.0
                hi = d.high if d.high is not None else 1.0
                R.ok(tag + " draws inside [low, high]", bool(np.all(np.asarray(r["samples"]) >= lo) and np.all(np.asarray(r["samples"]) <= hi)), "")
        replay(tag, "/v1/sample", body)

    # noise of (seed, b, m) independent of B and M; and the same across endpoints
    d = Dist("normal", 5, 3, rng)
    seed = 12345
    big = call("/v1/sample", {"distribution": d.json(), "samples": 7, "seed": seed}, "sample noise B=5 M=7")
    d1 = Dist("normal", 5, 3, rng)
    d1.mu, d1.rho = d.mu[:2], d.rho[:2]
    d1.B = 2
    small = call("/v1/sample", {"distribution": d1.json(), "samples": 3, "seed": seed}, "sample noise B=2 M=3")
    if big and small:
        be, se_ = np.asarray(big["eps"]), np.asarray(small["eps"])
        R.ok("noise of (seed,b,m) does not depend on B or M", np.array_equal(be[:2, :3], se_),
             "%s vs %s" % (be[:2, :3].ravel()[:4], se_.ravel()[:4]))
    tn = Dist("tanh_normal", 5, 3, rng, bounds=True)
    r2 = call("/v1/sample", {"distribution": tn.json(), "samples": 7, "seed": seed}, "sample noise tanh_normal")
    if big and r2:
        R.ok("noise is the same for every continuous type", np.array_equal(big["eps"], r2["eps"]), "")

    # a large request (worker pool, split by rows) against a small one: the same noise, bit for bit
    dl = Dist("normal", 3000, 8, rng)
    bl = call("/v1/sample", {"distribution": dl.json(), "samples": 4, "seed": 99, "output": "base64"}, "sample large B")
    ds = Dist("normal", 1, 8, rng)
    ds.mu, ds.rho, ds.B = dl.mu[2999:], dl.rho[2999:], 1
    # row 2999 of the big request has b = 2999; a 1-row request has b = 0: compare row 0 instead
    ds.mu, ds.rho = dl.mu[:1], dl.rho[:1]
    bs = call("/v1/sample", {"distribution": ds.json(), "samples": 4, "seed": 99}, "sample small B")
    if bl and bs:
        R.ok("pool-split large batch: same noise and draws as a 1-row request",
             np.array_equal(bl["eps"][:1], bs["eps"]) and np.array_equal(bl["samples"][:1], bs["samples"])
             and np.array_equal(bl["log_prob"][:1], bs["log_prob"]), "")
        e = bl["eps"].ravel()
        R.ok("eps looks standard normal (96k draws)", abs(e.mean()) < 4 / math.sqrt(e.size) and abs(e.var() - 1) < 4 * math.sqrt(2 / e.size),
             "mean %g var %g" % (e.mean(), e.var()))
        P = dl.forward(dl.leaves())
        close_struct("sample large B log_prob", bl["log_prob"], path(dl, P, bl["eps"])[1])

    # categorical draws follow p (chi-square over many independent rows)
    K, N = 5, 4000
    z = rng.normal(size=K)
    d = Dist("categorical", N, K, rng)
    d.z = np.tile(z, (N, 1))
    r = call("/v1/sample", {"distribution": d.json(), "samples": 4, "seed": 3, "output": "base64"}, "sample categorical frequencies")
    if r:
        p = np.exp(z - z.max()); p /= p.sum()
        cnt = np.bincount(r["samples"].ravel(), minlength=K)
        n = cnt.sum()
        chi2 = ((cnt - n * p) ** 2 / (n * p)).sum()
        R.ok("categorical draws follow softmax(logits) (chi2, 4 dof)", chi2 < 23.5, "chi2 %.2f counts %s expected %s" % (chi2, cnt, n * p))


def check_log_prob(rng):
    for kind, param, extra in [("categorical", "logits", {}), ("normal", "log_scale", {}), ("normal", "scale", {}),
                               ("tanh_normal", "log_scale", {}), ("tanh_normal", "scale", {"bounds": True}),
                               ("tanh_normal", "head", {"bounds": True}), ("categorical", "head", {"reduction": "sum"}),
                               ("normal", "head", {"bias": False})]:
        for single in (False, True):
            B = 1 if single else NB
            d = Dist(kind, B, KC if kind == "categorical" else 3, rng, param=param, **extra)
            M = MS
            if kind == "categorical":
                x = rng.integers(0, KC, size=(B, M))
            elif kind == "normal":
                x = rng.normal(size=(B, M, 3)) * 2
            else:
                x = d.c + d.s * np.tanh(rng.normal(size=(B, M, 3)))
            L = d.leaves()
            P = d.forward(L)
            lp = lp_fixed(d, P, x)
            exp = {"log_prob": lp.detach().numpy(), "grad": d.grad(lp.sum(), L, P)}
            if single:
                exp = drop_batch(exp)
            tag = "log_prob %s/%s%s%s" % (kind, param, extra, " single-row" if single else "")
            body = {"distribution": d.json(single), "x": enc(x, single)}
            r = call("/v1/log_prob", body, tag)
            if r:
                keys_are(tag + " fields", r, ["log_prob", "grad"])
                close_struct(tag, r, exp, rtol=1e-10 if kind != "tanh_normal" else 1e-9, ctx=jdump(body)[:600])
    # log space: logits [0, -1e4] give -10000 (API.md §Numbers at the edges)
    st, js, raw = post("/v1/log_prob", {"distribution": {"type": "categorical", "logits": [[0, -1e4]]}, "x": [[1]]})
    R.ok("log_prob of an underflowing probability is computed in log space", st == 200 and js["log_prob"] == [[-10000.0]], raw[:300])


def check_reparam(rng):
    for kind, param, extra in [("normal", "log_scale", {}), ("normal", "scale", {}), ("tanh_normal", "log_scale", {}),
                               ("tanh_normal", "scale", {"bounds": True}), ("tanh_normal", "head", {"bounds": True}),
                               ("normal", "head", {"reduction": "sum", "bias": False})]:
        for mode in ("eps", "seed", "seed-noM", "single", "M1"):
            single = mode == "single"
            B, D = (1 if single else NB), 2
            M = 1 if mode == "M1" else MS
            d = Dist(kind, B, D, rng, param=param, **extra)
            seed = int(rng.integers(0, 2 ** 53))
            s = sample(d, M, seed, "reparam")
            if s is None:
                continue
            eps = s["eps"]
            gx = rng.normal(size=(B, M, D))
            glp = rng.normal(size=(B, M)) if mode != "seed-noM" else None

            def T(P, d=d, eps=eps, gx=gx, glp=glp):
                x, lp = path(d, P, eps)
                t = (torch.tensor(gx) * x).sum(-1)
                if glp is not None:
                    t = t + torch.tensor(glp) * lp
                return t

            g, se = mc(d, T, M)
            x, lp = points(d, eps)
            exp = {"x": x, "log_prob": lp, "grad": g}
            if M >= 2:
                exp["stderr"] = {"grad": se}
            body = {"distribution": d.json(single), "grad_x": enc(gx, single)}
            if glp is not None:
                body["grad_log_prob"] = enc(glp, single)
            if mode == "eps" or mode == "M1":
                body["eps"] = enc(eps, single)
            else:
                body["seed"] = seed
                if mode != "seed-noM":
                    body["samples"] = M
            if single:
                exp = drop_batch(exp)
            tag = "reparam %s/%s%s %s" % (kind, param, extra, mode)
            r = call("/v1/reparam", body, tag)
            if not r:
                continue
            keys_are(tag + " fields", r, ["x", "log_prob", "grad"] + (["stderr"] if M >= 2 else [])
                     + (["seed"] if "seed" in body else []))
            if "seed" in body:
                R.ok(tag + " seed echoed", r.get("seed") == seed, str(r.get("seed")))
            close_struct(tag, {k: v for k, v in r.items() if k != "seed"}, exp, ctx=jdump(body)[:600])
            if mode == "seed":
                replay(tag, "/v1/reparam", body)


def check_score(rng):
    for kind, param, extra in [("categorical", "logits", {}), ("normal", "log_scale", {}), ("normal", "scale", {}),
                               ("tanh_normal", "log_scale", {}), ("tanh_normal", "scale", {"bounds": True}),
                               ("categorical", "head", {}), ("tanh_normal", "head", {"reduction": "sum"})]:
        for mode in ("x", "eps", "seed", "seed-noM", "single"):
            if kind == "categorical" and mode == "eps":
                continue
            if HARD and kind == "tanh_normal" and mode in ("x", "single"):
                continue  # atanh of a saturated draw loses the digits (API.md: prefer eps or seed near the bounds)
            for base in ("loo", "none"):
                single = mode == "single"
                B, D, M = (1 if single else NB), 3, MS
                d = Dist(kind, B, D, rng, param=param, **extra)
                seed = int(rng.integers(0, 2 ** 53))
                s = sample(d, M, seed, "score")
                if s is None:
                    continue
                f = rng.normal(size=(B, M)) * 2 + 1

                def T(P, d=d, s=s, f=f, base=base, mode=mode):
                    if d.kind == "categorical" or mode in ("x", "single"):
                        lp = lp_fixed(d, P, s["samples"])  # the points as sent (a tanh_normal's through atanh)
                    else:
                        lp = lp_eps_fixed(d, P, s["eps"])
                    ft = torch.tensor(f)
                    b = loo(ft) if base == "loo" else 0.0
                    return (ft - b) * lp

                g, se = mc(d, T, M)
                exp = {"value": f.mean(1), "grad": g, "stderr": {"value": sem(f), "grad": se}}
                body = {"distribution": d.json(single), "f": enc(f, single), "baseline": base}
                if mode in ("x", "single"):
                    body["x"] = enc(s["samples"], single)
                elif mode == "eps":
                    body["eps"] = enc(s["eps"])
                else:
                    body["seed"] = seed
                    if mode == "seed":
                        body["samples"] = M
                if single:
                    exp = drop_batch(exp)
                tag = "score %s/%s%s %s baseline=%s" % (kind, param, extra, mode, base)
                r = call("/v1/score", body, tag)
                if not r:
                    continue
                keys_are(tag + " fields", r, ["value", "grad", "stderr"] + (["seed"] if "seed" in body else []))
                if "seed" in body:
                    R.ok(tag + " seed echoed", r.get("seed") == seed, str(r.get("seed")))
                # a tanh_normal's x goes through atanh: a few ulps of the draw become more
                rt = 1e-7 if (kind == "tanh_normal" and mode in ("x", "single")) else RTOL
                close_struct(tag, {k: v for k, v in r.items() if k != "seed"}, exp, rtol=rt, atol_rel=rt / 100,
                             ctx=jdump(body)[:600])
                if mode == "seed" and base == "loo":
                    replay(tag, "/v1/score", body)
    # M = 1 with baseline none: no stderr
    d = Dist("normal", 2, 2, rng)
    r = call("/v1/score", {"distribution": d.json(), "seed": 4, "f": [[1.0], [2.0]], "baseline": "none"}, "score M=1")
    if r:
        keys_are("score M=1 has no stderr", r, ["value", "grad", "seed"])


def check_discrete_actor(rng):
    for param, extra in [("logits", {}), ("head", {}), ("head", {"reduction": "sum"}), ("head", {"bias": False})]:
        for single in (False, True):
            for te in (None, 0.7):
                B, K = (1 if single else NB + 1), KC + 1
                d = Dist("categorical", B, K, rng, param=param, **extra)
                alpha = float(rng.uniform(0.05, 1.0))
                Q = rng.normal(size=(B, K)) * 2
                L = d.leaves()
                P = d.forward(L)
                lp = torch.log_softmax(P["z"], -1)
                p = lp.exp()
                Lo = (p * (alpha * lp - torch.tensor(Q))).sum(-1)
                H = -(p * lp).sum(-1)
                exp = {"estimator": "exact", "loss": Lo.detach().numpy(), "entropy": H.detach().numpy(),
                       "grad": d.grad(Lo.sum(), L, P)}
                body = {"q": enc(Q, single), "alpha": alpha}
                body.update({"logits": enc(d.z, single)} if param == "logits" else d.top_head_json(single))
                if te is not None:
                    body["target_entropy"] = te
                    al = alpha * float((H.detach().numpy() - te).mean())
                if single:
                    exp = drop_batch(exp)
                exp.pop("estimator")
                if te is not None:
                    exp["alpha_loss"] = al
                    exp["grad_log_alpha"] = al
                tag = "sac/discrete/actor exact %s%s%s te=%s" % (param, extra, " single" if single else "", te)
                r = call("/v1/sac/discrete/actor", body, tag)
                if not r:
                    continue
                keys_are(tag + " fields", r, ["estimator", "loss", "entropy", "grad"] + (["alpha_loss", "grad_log_alpha"] if te is not None else []))
                R.ok(tag + " estimator", r.get("estimator") == "exact", str(r.get("estimator")))
                close_struct(tag, {k: v for k, v in r.items() if k != "estimator"}, exp, ctx=jdump(body)[:600])

    # sampled
    for param, extra in [("logits", {}), ("head", {}), ("head", {"reduction": "sum", "bias": False})]:
        for base in ("loo", "none"):
            for single in (False, True):
                for te in (None, -0.3):
                    B, K, M = (1 if single else NB + 1), KC + 1, MS
                    d = Dist("categorical", B, K, rng, param=param, **extra)
                    alpha = float(rng.uniform(0.05, 1.0))
                    acts = rng.integers(0, K, size=(B, M))
                    q = rng.normal(size=(B, M)) * 2
                    P0 = d.forward(d.leaves())
                    lp0 = torch.log_softmax(P0["z"], -1).detach()
                    tm = alpha * torch.gather(lp0, 1, torch.tensor(acts)) - torch.tensor(q)
                    H = -(lp0.exp() * lp0).sum(-1).numpy()

                    def T(P, d=d, acts=acts, tm=tm, base=base):
                        lpk = torch.gather(torch.log_softmax(P["z"], -1), 1, torch.tensor(acts))
                        b = loo(tm) if base == "loo" else 0.0
                        return (tm - b) * lpk  # ∂/∂z = (t - b)(e_k - p)

                    g, se = mc(d, T, M)
                    exp = {"loss": tm.mean(1).numpy(), "entropy": H, "grad": g,
                           "stderr": {"loss": sem(tm), "grad": se}}
                    if single:
                        exp = drop_batch(exp)
                    if te is not None:
                        exp["alpha_loss"] = exp["grad_log_alpha"] = alpha * float((H - te).mean())
                    body = {"actions": enc(acts, single), "q": enc(q, single), "alpha": alpha, "baseline": base}
                    body.update({"logits": enc(d.z, single)} if param == "logits" else d.top_head_json(single))
                    if te is not None:
                        body["target_entropy"] = te
                    tag = "sac/discrete/actor sampled %s%s baseline=%s%s te=%s" % (param, extra, base, " single" if single else "", te)
                    r = call("/v1/sac/discrete/actor", body, tag)
                    if not r:
                        continue
                    keys_are(tag + " fields", r, ["estimator", "loss", "entropy", "grad", "stderr"]
                             + (["alpha_loss", "grad_log_alpha"] if te is not None else []))
                    R.ok(tag + " estimator", r.get("estimator") == "sampled", str(r.get("estimator")))
                    close_struct(tag, {k: v for k, v in r.items() if k != "estimator"}, exp, ctx=jdump(body)[:700])
    # M = 1 with baseline none: no stderr
    r = call("/v1/sac/discrete/actor", {"logits": [[0.1, 0.2]], "actions": [[1]], "q": [[0.5]], "alpha": 0.3,
                                        "baseline": "none"}, "sac/discrete/actor sampled M=1")
    if r:
        keys_are("sac/discrete/actor sampled M=1 has no stderr", r, ["estimator", "loss", "entropy", "grad"])
        lp = np.log(np.exp([0.1, 0.2]) / np.exp([0.1, 0.2]).sum())
        t = 0.3 * lp[1] - 0.5
        p = np.exp(lp)
        close_struct("sac/discrete/actor sampled M=1 values", {"loss": r["loss"], "grad": r["grad"]},
                     {"loss": [t], "grad": {"logits": [t * (np.eye(2)[1] - p)]}})


def check_policy(rng):
    for single in (False, True):
        for M in (0, 5):
            B, K = (1 if single else NB), KC
            Q = rng.normal(size=(B, K)) * 3
            alpha = float(rng.uniform(0.1, 2))
            z = torch.tensor(Q) / alpha
            lp = torch.log_softmax(z, -1)
            p = lp.exp()
            exp = {"probs": p, "log_probs": lp, "entropy": -(p * lp).sum(-1),
                   "value": alpha * torch.logsumexp(z, -1)}
            exp = {k: v.numpy() for k, v in exp.items()}
            if single:
                exp = drop_batch(exp)
            body = {"q": enc(Q, single), "alpha": alpha}
            if M:
                body["samples"] = M
                body["seed"] = 77
            tag = "sac/discrete/policy samples=%d%s" % (M, " single" if single else "")
            r = call("/v1/sac/discrete/policy", body, tag)
            if not r:
                continue
            keys_are(tag + " fields", r, ["probs", "log_probs", "entropy", "value"] + (["actions", "seed"] if M else []))
            close_struct(tag, {k: r[k] for k in exp if k in r}, exp)
            # V = Σ p (Q - α log p) too
            vv = (p * (torch.tensor(Q) - alpha * lp)).sum(-1).numpy()
            close_struct(tag + " V = Σp(Q - α log p)", r["value"], vv if not single else vv[0], rtol=1e-9)
            if M:
                a = np.asarray(r["actions"])
                R.ok(tag + " actions shape/range", a.shape == ((M,) if single else (B, M)) and a.min() >= 0 and a.max() < K, str(a))
                R.ok(tag + " seed echoed", r.get("seed") == 77, str(r.get("seed")))
                replay(tag, "/v1/sac/discrete/policy", body)
    # policy with samples=0 but a seed: neither actions nor seed
    r = call("/v1/sac/discrete/policy", {"q": [[1.0, 2.0]], "alpha": 0.5, "seed": 3}, "policy samples=0 with seed")
    if r:
        keys_are("policy samples=0 with a seed: no actions, no seed", r, ["probs", "log_probs", "entropy", "value"])
    # frequencies of the drawn actions
    K, N = 4, 3000
    Q = rng.normal(size=K)
    r = call("/v1/sac/discrete/policy", {"q": np.tile(Q, (N, 1)).tolist(), "alpha": 0.7, "samples": 4, "seed": 5,
                                         "output": "base64"}, "policy frequencies")
    if r:
        p = np.exp(Q / 0.7 - (Q / 0.7).max()); p /= p.sum()
        cnt = np.bincount(r["actions"].ravel(), minlength=K)
        n = cnt.sum()
        chi2 = ((cnt - n * p) ** 2 / (n * p)).sum()
        R.ok("policy actions follow softmax(Q/α) (chi2, 3 dof)", chi2 < 21.1, "chi2 %.2f counts %s expected %s" % (chi2, cnt, n * p))


def check_continuous_actor(rng):
    for param, extra in [("log_scale", {}), ("scale", {"bounds": True}), ("head", {"bounds": True}),
                         ("head", {"reduction": "sum", "bias": False}), ("log_scale", {"bounds": True})]:
        for mode in ("seed", "eps", "single", "M1", "seed-noM"):
            for with_q, te in ((True, -1.5), (False, None), (True, None), (False, 0.4)):
                single = mode == "single"
                B, D = (1 if single else NB), 2
                M = 1 if mode == "M1" else MS
                d = Dist("tanh_normal", B, D, rng, param=param, **extra)
                seed = int(rng.integers(0, 2 ** 53))
                s = sample(d, M, seed, "continuous actor")
                if s is None:
                    continue
                alpha = float(rng.uniform(0.05, 1.0))
                dq = rng.normal(size=(B, M, D))
                q = rng.normal(size=(B, M))
                eps = s["eps"]

                def T(P, d=d, eps=eps, dq=dq, alpha=alpha):
                    a, lp = path(d, P, eps)
                    return alpha * lp - (torch.tensor(dq) * a).sum(-1)

                g, se = mc(d, T, M)
                a, lp = points(d, eps)
                H = -lp.mean(1)
                exp = {"entropy": H, "log_prob": lp, "actions": a, "grad": g}
                if with_q:
                    exp["loss"] = (alpha * lp - q).mean(1)
                if M >= 2:
                    exp["stderr"] = {"entropy": sem(lp), "grad": se}
                    if with_q:
                        exp["stderr"]["loss"] = sem(alpha * lp - q)
                if single:
                    exp = drop_batch(exp)
                if te is not None:
                    exp["alpha_loss"] = exp["grad_log_alpha"] = alpha * float((H - te).mean())
                    if M >= 2:
                        # the standard error of α·mean_b(Ĥ_b - H̄): rows are independent
                        sa = alpha * math.sqrt(float((sem(lp) ** 2).sum())) / B
                        exp["stderr"]["alpha_loss"] = exp["stderr"]["grad_log_alpha"] = sa
                body = {"distribution": d.json(single), "alpha": alpha, "dq_da": enc(dq, single)}
                if with_q:
                    body["q"] = enc(q, single)
                if te is not None:
                    body["target_entropy"] = te
                if mode in ("eps", "M1"):
                    body["eps"] = enc(eps, single)
                else:
                    body["seed"] = seed
                    if mode != "seed-noM":
                        body["samples"] = M
                tag = "sac/continuous/actor %s%s %s q=%s te=%s" % (param, extra, mode, with_q, te)
                r = call("/v1/sac/continuous/actor", body, tag)
                if not r:
                    continue
                keys_are(tag + " fields", r, ["entropy", "log_prob", "actions", "grad"] + (["loss"] if with_q else [])
                         + (["stderr"] if M >= 2 else []) + (["alpha_loss", "grad_log_alpha"] if te is not None else [])
                         + (["seed"] if "seed" in body else []))
                if "seed" in body:
                    R.ok(tag + " seed echoed", r.get("seed") == seed, str(r.get("seed")))
                close_struct(tag, {k: v for k, v in r.items() if k != "seed"}, exp, ctx=jdump(body)[:700])
                if mode == "seed" and with_q and te is not None:
                    replay(tag, "/v1/sac/continuous/actor", body)


# ---- base64 in and out, single-row, batch


def check_base64(rng):
    """The same request with tensors in (float32 values, float64/int32/int64 tensors) answers the same numbers."""
    def f32(a):
        return np.asarray(a, dtype=np.float32).astype(np.float64)

    # continuous actor with every input as a tensor
    d = Dist("tanh_normal", 3, 2, rng, bounds=True)
    d.mu, d.rho, d.low, d.high = f32(d.mu), f32(d.rho), f32(d.low), f32(d.high)
    dq = f32(rng.normal(size=(3, 4, 2)))
    q = rng.normal(size=(3, 4))
    base = {"alpha": 0.3, "seed": 5, "samples": 4, "target_entropy": -1.0}
    bj = dict(base, distribution=d.json(), dq_da=dq.tolist(), q=q.tolist())
    bt = dict(base, distribution=d.json(mode="float32"), dq_da=tensor(dq, "float32"), q=tensor(q, "float64"))
    bt["distribution"]["low"] = tensor(d.low, "float64")
    st1, j1, raw1 = post("/v1/sac/continuous/actor", bj)
    st2, j2, raw2 = post("/v1/sac/continuous/actor", bt)
    R.ok("base64 tensors in: same bytes as JSON (continuous actor)", st1 == st2 == 200 and raw1 == raw2,
         "%s\n%s" % (raw1[:300], raw2[:300]))
    st3, j3, raw3 = post("/v1/sac/continuous/actor", dict(bt, output="base64"))
    if R.ok("base64 out status", st3 == 200, raw3[:300]):
        close_struct("base64 out decodes to the JSON answer (continuous actor)", decode(j3), decode(j1), rtol=0, atol_rel=0)
        R.ok("base64 out: every array is a float64 tensor", all(
            (isinstance(v, dict) and v.get("dtype") == "float64") or isinstance(v, (int, float))
            for p, v in flat_tensors(j3)), str([(p, type(v)) for p, v in flat_tensors(j3)][:10]))
    # categorical with int32/int64 actions
    d = Dist("categorical", 3, 4, rng)
    d.z = f32(d.z)
    acts = rng.integers(0, 4, size=(3, 5))
    q = rng.normal(size=(3, 5))
    bj = {"logits": d.z.tolist(), "actions": acts.tolist(), "q": q.tolist(), "alpha": 0.4}
    for dt in ("int32", "int64"):
        bt = {"logits": tensor(d.z, "float32"), "actions": tensor(acts, dt), "q": tensor(q, "float64"), "alpha": 0.4}
        st1, _, raw1 = post("/v1/sac/discrete/actor", bj)
        st2, _, raw2 = post("/v1/sac/discrete/actor", bt)
        R.ok("base64 %s actions in: same bytes as JSON (discrete actor)" % dt, st1 == st2 == 200 and raw1 == raw2,
             "%s\n%s" % (raw1[:300], raw2[:300]))
    # sample: int64 tensor of actions out, single-row scalars stay numbers
    st, js, raw = post("/v1/sample", {"distribution": {"type": "categorical", "logits": [0.0, 1.0]}, "samples": 3,
                                      "seed": 1, "output": "base64"})
    R.ok("base64 out: categorical draws are an int64 tensor", st == 200 and js["samples"]["dtype"] == "int64", raw[:300])
    st, js, raw = post("/v1/entropy", {"distribution": {"type": "categorical", "logits": [0.0, 1.0]}, "output": "base64"})
    R.ok("base64 out single-row: a per-row scalar stays a plain number", st == 200 and isinstance(js["entropy"], float)
         and is_tensor(js["grad"]["logits"]), raw[:300])
    # score with x as an int tensor and f as float32
    d = Dist("categorical", 2, 3, rng)
    x = rng.integers(0, 3, size=(2, 4))
    f = f32(rng.normal(size=(2, 4)))
    s1, _, r1 = post("/v1/score", {"distribution": d.json(), "x": x.tolist(), "f": f.tolist()})
    s2, _, r2 = post("/v1/score", {"distribution": d.json(mode="float64"), "x": tensor(x, "int32"), "f": tensor(f, "float32")})
    R.ok("base64 in: /v1/score same bytes as JSON", s1 == s2 == 200 and r1 == r2, "%s\n%s" % (r1[:300], r2[:300]))
    # head tensors
    d = Dist("normal", 3, 2, rng, param="head")
    e1 = {"distribution": d.json(), "estimator": "reparam", "seed": 2, "samples": 3}
    e2 = {"distribution": d.json(mode="float64"), "estimator": "reparam", "seed": 2, "samples": 3}
    s1, _, r1 = post("/v1/entropy", e1)
    s2, _, r2 = post("/v1/entropy", e2)
    R.ok("base64 in: a head's tensors give the same bytes as JSON", s1 == s2 == 200 and r1 == r2, "%s\n%s" % (r1[:300], r2[:300]))


def flat_tensors(o, p=()):
    if isinstance(o, dict) and not is_tensor(o):
        for k, v in o.items():
            yield from flat_tensors(v, p + (k,))
    else:
        if p and p[-1] == "seed":
            return
        yield p, o


def check_single_row(rng):
    """A 1-D request answers the B = 1 batched answer with its batch axis dropped (bit for bit)."""
    cases = []
    d = Dist("tanh_normal", 1, 2, rng, bounds=True)
    dq = rng.normal(size=(1, 3, 2))
    cases.append(("/v1/sac/continuous/actor", lambda s: {"distribution": d.json(s), "alpha": 0.2, "seed": 3,
                                                          "dq_da": enc(dq, s), "q": enc(dq[..., 0], s)}))
    dc = Dist("categorical", 1, 3, rng, param="head")
    cases.append(("/v1/entropy", lambda s: {"distribution": dc.json(s), "estimator": "score", "samples": 4, "seed": 1}))
    cases.append(("/v1/sample", lambda s: {"distribution": dc.json(s), "samples": 4, "seed": 1}))
    cases.append(("/v1/sac/discrete/policy", lambda s: {"q": enc([[1.0, 2.0, 0.5]], s), "alpha": 0.3, "samples": 2, "seed": 1}))
    for p, mk in cases:
        r1 = call(p, mk(False), "single-row vs batched " + p)
        r2 = call(p, mk(True), "single-row " + p)
        if r1 and r2:
            exp = {k: (v if k in ("estimator", "seed") or (k == "samples" and isinstance(v, int)) else drop_batch(v, (k,)))
                   for k, v in r1.items()}
            R.ok("single-row answer = batched answer without its batch axis " + p, same(r2, exp),
                 "single %s\nbatched %s" % (str(r2)[:400], str(r1)[:400]))
    # a mix of 1-D and 2-D is a 400
    st, js, raw = post("/v1/sac/discrete/actor", {"logits": [0.1, 0.2], "q": [[1.0, 2.0]], "alpha": 0.3})
    R.ok("single-row: 1-D logits with 2-D q is a 400 naming q", st == 400 and js["error"].get("field") == "q", raw[:300])


def same(a, b):
    """exact equality of two decoded answers (numbers bit for bit)"""
    if isinstance(a, dict) or isinstance(b, dict):
        return isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return x.shape == y.shape and np.array_equal(x, y)


def check_batch(rng):
    d1 = Dist("normal", 2, 3, rng, param="scale")
    d2 = Dist("categorical", 3, 4, rng, param="head", reduction="sum")
    d3 = Dist("tanh_normal", 2, 2, rng, bounds=True)
    items = [
        ("entropy", {"distribution": d1.json(), "estimator": "score", "samples": 5, "seed": 1}),
        ("entropy", {"distribution": d2.json()}),
        ("sample", {"distribution": d3.json(), "samples": 3, "seed": 2}),
        ("log_prob", {"distribution": d2.json(), "x": [[0, 1], [2, 3], [1, 1]]}),
        ("reparam", {"distribution": d3.json(), "seed": 4, "grad_x": rng.normal(size=(2, 3, 2)).tolist()}),
        ("score", {"distribution": d1.json(), "seed": 5, "f": rng.normal(size=(2, 4)).tolist()}),
        ("sac/discrete/actor", {"logits": d2.numpy_params()["z"].tolist(), "q": rng.normal(size=(3, 4)).tolist(), "alpha": 0.2,
                                "target_entropy": 1.0}),
        ("sac/discrete/actor", {"logits": [[0.0, 1.0]], "actions": [[0, 1, 1]], "q": [[1.0, 2.0, 0.0]], "alpha": 0.2}),
        ("sac/discrete/policy", {"q": [[1.0, 2.0, 3.0]], "alpha": 0.5, "samples": 3, "seed": 9}),
        ("sac/continuous/actor", {"distribution": d3.json(), "alpha": 0.1, "seed": 6,
                                  "dq_da": rng.normal(size=(2, 2, 2)).tolist(), "q": [[1, 2], [3, 4]], "target_entropy": -1}),
        ("entropy", {"distribution": {"type": "tanh_normal", "loc": [0.0], "log_scale": [0.0]}, "estimator": "exact"}),
        ("nope", {}),
        ("batch", {"requests": []}),
        ("entropy", {"distribution": {"type": "categorical", "logits": [1.0, 2.0]}, "estimater": "exact"}),
        ("sample", {"distribution": d3.json(), "samples": 2, "seed": 2, "output": "json"}),
    ]
    for top_output in (None, "base64"):
        body = {"requests": [{"op": op, "body": b} for op, b in items]}
        if top_output:
            body["output"] = top_output
        st, js, raw = post("/v1/batch", body)
        if not R.ok("batch status 200 (output=%s)" % top_output, st == 200, raw[:400]):
            continue
        resp = js["responses"]
        R.ok("batch: one response per item", len(resp) == len(items), str(len(resp)))
        for i, ((op, b), it) in enumerate(zip(items, resp)):
            bb = dict(b)
            if top_output and "output" not in bb and op not in ("nope", "batch"):
                bb["output"] = top_output
            if op in ("nope", "batch"):
                R.ok("batch item %d (%s) is 404 not_found naming op" % (i, op),
                     it["status"] == 404 and it["body"]["error"]["code"] == "not_found", jdump(it)[:300])
                continue
            st1, j1, raw1 = post("/v1/" + op, bb)
            R.ok("batch item %d (%s, output=%s) = the request on its own" % (i, op, top_output),
                 it["status"] == st1 and it["body"] == j1, "item %s %s\nalone %s %s" % (it["status"], jdump(it["body"])[:300], st1, raw1[:300]))
    # the top-level output is inherited, an item's own wins
    st, js, raw = post("/v1/batch", {"requests": [{"op": "sample", "body": items[-1][1]},  # its own "output": "json"
                                                  {"op": "sample", "body": items[2][1]}], "output": "base64"})
    if R.ok("batch output inheritance status", st == 200, raw[:300]):
        R.ok("batch: an item's own output wins over the batch's", isinstance(js["responses"][0]["body"]["samples"], list)
             and is_tensor(js["responses"][1]["body"]["samples"]), raw[:400])
    # more than 1024 items: 413 for the whole request
    st, js, raw = post("/v1/batch", {"requests": [{"op": "nope", "body": {}}] * 1025})
    R.ok("batch of 1025 items is a 413", st == 413 and js["error"]["code"] == "payload_too_large", raw[:300])


# ---- statistics of the estimators


def gh(n=160):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return torch.tensor(x), torch.tensor(w / w.sum())


def check_statistics(rng):
    N = 4000  # independent rows of the same distribution: row b's noise is its own

    def within(name, est, se_rows, exact, k=4.0):
        est, se_rows, exact = tonp(est), tonp(se_rows), tonp(exact)
        m = est.mean(0)
        se = np.sqrt((se_rows ** 2).mean(0) / est.shape[0])
        z = np.abs(m - exact) / np.maximum(se, 1e-300)
        emp = est.std(0, ddof=1) / np.sqrt(est.shape[0])
        ratio = np.median(emp / np.maximum(se, 1e-300))
        R.ok(name, np.all(z < k), "mean %s exact %s |z| %s" % (m, exact, z))
        R.ok(name + ": reported stderr matches the spread over rows (within 25%)", 0.75 < ratio < 1.33,
             "empirical/reported %.3f" % ratio)

    # categorical entropy, score (loo, M=32) and (none, M=16)
    K = 5
    z = rng.normal(size=K)
    zt = torch.tensor(z, requires_grad=True)
    lp = torch.log_softmax(zt, -1)
    H = -(lp.exp() * lp).sum()
    gH = torch.autograd.grad(H, zt)[0].numpy()
    for base, M in (("loo", 32), ("none", 16)):
        r = call("/v1/entropy", {"distribution": {"type": "categorical", "logits": np.tile(z, (N, 1)).tolist()},
                                 "estimator": "score", "baseline": base, "samples": M, "seed": 11, "output": "base64"},
                 "stat categorical score")
        if r:
            within("stat: categorical score entropy gradient (%s, M=%d) is unbiased" % (base, M), r["grad"]["logits"],
                   r["stderr"]["grad"]["logits"], gH)
            within("stat: categorical score entropy estimate (%s, M=%d)" % (base, M), r["entropy"], r["stderr"]["entropy"], H.item())

    # normal entropy, score loo M=32: grad loc 0, log_scale 1 (scale: 1/σ)
    mu, rho = rng.normal(size=3), rng.uniform(-1, 0.5, size=3)
    for key, pv, exp_g in (("log_scale", rho, np.ones(3)), ("scale", np.exp(rho), np.exp(-rho))):
        r = call("/v1/entropy", {"distribution": {"type": "normal", "loc": np.tile(mu, (N, 1)).tolist(), key: np.tile(pv, (N, 1)).tolist()},
                                 "estimator": "score", "samples": 32, "seed": 12, "output": "base64"}, "stat normal score")
        if r:
            within("stat: normal score entropy gradient wrt loc is unbiased (%s)" % key, r["grad"]["loc"], r["stderr"]["grad"]["loc"], np.zeros(3))
            within("stat: normal score entropy gradient wrt %s is unbiased" % key, r["grad"][key], r["stderr"]["grad"][key], exp_g)

    # tanh_normal (bounds) entropy: reparam and score against Gauss-Hermite quadrature
    D = 2
    mu, rho = rng.normal(size=D) * 0.7, rng.uniform(-0.8, 0.3, size=D)
    low, high = np.array([-2.0, -0.5]), np.array([1.0, 2.5])
    x, w = gh()
    mt, rt = torch.tensor(mu, requires_grad=True), torch.tensor(rho, requires_grad=True)
    u = mt[:, None] + torch.exp(rt)[:, None] * x[None, :]
    s = torch.tensor((high - low) / 2)
    Hq = (0.5 * (LOG2PI + 1) + rt + torch.log(s) + (w[None, :] * log1mt2(u)).sum(-1)).sum()
    gmu, grho = [g.numpy() for g in torch.autograd.grad(Hq, [mt, rt])]
    dist = {"type": "tanh_normal", "loc": np.tile(mu, (N, 1)).tolist(), "log_scale": np.tile(rho, (N, 1)).tolist(),
            "low": low.tolist(), "high": high.tolist()}
    for est, M in (("reparam", 16), ("score", 32)):
        r = call("/v1/entropy", {"distribution": dist, "estimator": est, "samples": M, "seed": 13, "output": "base64"}, "stat tanh")
        if r:
            within("stat: tanh_normal %s entropy (bounds) matches quadrature" % est, r["entropy"], r["stderr"]["entropy"], Hq.item())
            within("stat: tanh_normal %s entropy gradient wrt loc matches quadrature" % est, r["grad"]["loc"], r["stderr"]["grad"]["loc"], gmu)
            within("stat: tanh_normal %s entropy gradient wrt log_scale matches quadrature" % est, r["grad"]["log_scale"],
                   r["stderr"]["grad"]["log_scale"], grho)

    # /v1/score: categorical f(k) = v_k -> p ⊙ (v - Σ p v); normal f = Σ x² -> 2μ, 2σ²
    v = rng.normal(size=K) * 2
    p = np.exp(z - z.max()); p /= p.sum()
    M = 16
    sd = {"distribution": {"type": "categorical", "logits": np.tile(z, (N, 1)).tolist()}, "samples": M, "seed": 21, "output": "base64"}
    sr = call("/v1/sample", sd, "stat score categorical sample")
    if sr:
        f = v[sr["samples"]]
        r = call("/v1/score", dict(sd, f=tensor(f, "float64")), "stat score categorical")
        if r:
            within("stat: /v1/score categorical f(k)=v_k is unbiased (loo)", r["grad"]["logits"], r["stderr"]["grad"]["logits"], p * (v - p @ v))
    mu, rho = rng.normal(size=2), rng.uniform(-0.5, 0.5, size=2)
    sd = {"distribution": {"type": "normal", "loc": np.tile(mu, (N, 1)).tolist(), "log_scale": np.tile(rho, (N, 1)).tolist()},
          "samples": M, "seed": 22, "output": "base64"}
    sr = call("/v1/sample", sd, "stat score normal sample")
    if sr:
        f = (sr["samples"] ** 2).sum(-1)
        r = call("/v1/score", dict(sd, f=tensor(f, "float64"), baseline="none"), "stat score normal")
        if r:
            within("stat: /v1/score normal f=Σx² wrt loc = 2μ", r["grad"]["loc"], r["stderr"]["grad"]["loc"], 2 * mu)
            within("stat: /v1/score normal f=Σx² wrt log_scale = 2σ²", r["grad"]["log_scale"], r["stderr"]["grad"]["log_scale"], 2 * np.exp(2 * rho))
        # the same f through /v1/reparam: grad_x = 2x
        rr = call("/v1/reparam", {"distribution": sd["distribution"], "seed": 22, "grad_x": tensor(2 * sr["samples"], "float64"),
                                  "output": "base64"}, "stat reparam normal")
        if rr:
            within("stat: /v1/reparam normal f=Σx² wrt loc = 2μ", rr["grad"]["loc"], rr["stderr"]["grad"]["loc"], 2 * mu)
            within("stat: /v1/reparam normal f=Σx² wrt log_scale = 2σ²", rr["grad"]["log_scale"], rr["stderr"]["grad"]["log_scale"], 2 * np.exp(2 * rho))

    # sampled discrete SAC actor against the exact one; actions drawn by /v1/sample
    Q = rng.normal(size=K) * 2
    alpha = 0.3
    zt = torch.tensor(z, requires_grad=True)
    lp = torch.log_softmax(zt, -1)
    Lx = (lp.exp() * (alpha * lp - torch.tensor(Q))).sum()
    gL = torch.autograd.grad(Lx, zt)[0].numpy()
    for base, M in (("loo", 32), ("none", 16)):
        sr = call("/v1/sample", {"distribution": {"type": "categorical", "logits": np.tile(z, (N, 1)).tolist()}, "samples": M,
                                 "seed": 31, "output": "base64"}, "stat actor sample")
        if sr:
            r = call("/v1/sac/discrete/actor", {"logits": np.tile(z, (N, 1)).tolist(), "actions": tensor(sr["samples"], "int64"),
                                                "q": tensor(Q[sr["samples"]], "float64"), "alpha": alpha, "baseline": base,
                                                "output": "base64"}, "stat actor")
            if r:
                within("stat: sampled discrete actor gradient (%s, M=%d) is unbiased" % (base, M), r["grad"]["logits"], r["stderr"]["grad"]["logits"], gL)
                within("stat: sampled discrete actor loss (%s, M=%d) is unbiased" % (base, M), r["loss"], r["stderr"]["loss"], Lx.item())

    # continuous actor with a separable quadratic critic Q(a) = Σ_d (k1 a - k2 a²), against quadrature
    D = 2
    mu, rho = rng.normal(size=D) * 0.5, rng.uniform(-1, 0, size=D)
    k1, k2 = rng.normal(size=D), rng.uniform(0.2, 1, size=D)
    alpha = 0.25
    mt, rt = torch.tensor(mu, requires_grad=True), torch.tensor(rho, requires_grad=True)
    u = mt[:, None] + torch.exp(rt)[:, None] * x[None, :]
    c, s = (high + low) / 2, (high - low) / 2
    a = torch.tensor(c)[:, None] + torch.tensor(s)[:, None] * torch.tanh(u)
    Hd = (0.5 * (LOG2PI + 1) + rt + torch.log(torch.tensor(s)) + (w[None, :] * log1mt2(u)).sum(-1)).sum()
    EQ = (w[None, :] * (torch.tensor(k1)[:, None] * a - torch.tensor(k2)[:, None] * a ** 2)).sum()
    J = -alpha * Hd - EQ
    gmu, grho = [g.numpy() for g in torch.autograd.grad(J, [mt, rt])]
    M = 16
    dist = {"type": "tanh_normal", "loc": np.tile(mu, (N, 1)).tolist(), "log_scale": np.tile(rho, (N, 1)).tolist(),
            "low": low.tolist(), "high": high.tolist()}
    sr = call("/v1/sample", {"distribution": dist, "samples": M, "seed": 41, "output": "base64"}, "stat continuous sample")
    if sr:
        A = sr["samples"]
        r = call("/v1/sac/continuous/actor", {"distribution": dist, "alpha": alpha, "seed": 41,
                                              "dq_da": tensor(k1 - 2 * k2 * A, "float64"),
                                              "q": tensor((k1 * A - k2 * A ** 2).sum(-1), "float64"), "output": "base64"}, "stat continuous actor")
        if r:
            within("stat: continuous actor gradient wrt loc matches quadrature", r["grad"]["loc"], r["stderr"]["grad"]["loc"], gmu)
            within("stat: continuous actor gradient wrt log_scale matches quadrature", r["grad"]["log_scale"], r["stderr"]["grad"]["log_scale"], grho)
            within("stat: continuous actor loss matches quadrature", r["loss"], r["stderr"]["loss"], J.item())
            within("stat: continuous actor entropy matches quadrature", r["entropy"], r["stderr"]["entropy"], Hd.item())


# ---- large requests: the worker pool's split gives the numbers of a small one


def check_split(rng):
    K, B = 6, 3000
    d = Dist("categorical", B, K, rng)
    body = {"distribution": d.json(), "estimator": "score", "samples": 8, "seed": 5, "output": "base64"}
    r = call("/v1/entropy", body, "large batch entropy")
    d2 = Dist("categorical", 9, K, rng)
    d2.z = d.z[:9]
    r2 = call("/v1/entropy", dict(body, distribution=d2.json()), "small batch entropy")
    if r and r2:
        close_struct("a large (pool-split) request's first rows equal a small request's", {k: v[:9] for k, v in flat_first(r).items()},
                     flat_first(r2), rtol=0, atol_rel=0)
    D = 3
    d = Dist("tanh_normal", B, D, rng, bounds=True)
    dq = rng.normal(size=(B, 4, D))
    body = {"distribution": d.json(mode="float64"), "alpha": 0.2, "seed": 8, "dq_da": tensor(dq, "float64"),
            "q": tensor(dq[..., 0], "float64"), "output": "base64"}
    r = call("/v1/sac/continuous/actor", body, "large continuous actor")
    d2 = Dist("tanh_normal", 9, D, rng, bounds=True)
    d2.mu, d2.rho, d2.low, d2.high, d2.c, d2.s = d.mu[:9], d.rho[:9], d.low, d.high, d.c, d.s
    r2 = call("/v1/sac/continuous/actor", dict(body, distribution=d2.json(), dq_da=tensor(dq[:9], "float64"),
                                               q=tensor(dq[:9, :, 0], "float64")), "small continuous actor")
    if r and r2:
        close_struct("a large (pool-split) continuous actor's first rows equal a small request's",
                     {k: v[:9] for k, v in flat_first(r).items() if not k.startswith("seed")}, {k: v for k, v in flat_first(r2).items() if not k.startswith("seed")},
                     rtol=0, atol_rel=0)
        # and they agree with torch
        s = sample(d2, 4, 8, "split")
        if s:
            def T(P, d2=d2, eps=s["eps"]):
                a, lp = path(d2, P, eps)
                return 0.2 * lp - (torch.tensor(dq[:9]) * a).sum(-1)
            g, se = mc(d2, T, 4)
            close_struct("large continuous actor rows agree with torch", {"loc": r["grad"]["loc"][:9], "log_scale": r["grad"]["log_scale"][:9]}, g)


def flat_first(r):
    return {".".join(p): np.asarray(v) for p, v in flat(r) if not isinstance(v, str) and np.ndim(v) > 0}


# ---- the same draws everywhere, defaults, concurrency, thread counts, numbers


def check_consistency(rng):
    # the draws of a seed are the same bits on every endpoint
    d = Dist("tanh_normal", 10, 3, rng, bounds=True)
    M, seed = 5, 987654321
    s = call("/v1/sample", {"distribution": d.json(), "samples": M, "seed": seed}, "consistency sample")
    gx = np.zeros((10, M, 3))
    r = call("/v1/reparam", {"distribution": d.json(), "seed": seed, "grad_x": gx.tolist()}, "consistency reparam")
    a = call("/v1/sac/continuous/actor", {"distribution": d.json(), "seed": seed, "alpha": 0.1, "dq_da": gx.tolist()}, "consistency actor")
    r2 = call("/v1/reparam", {"distribution": d.json(), "eps": s["eps"].tolist() if s and hasattr(s["eps"], "tolist") else (s or {}).get("eps"),
                              "grad_x": gx.tolist()}, "consistency reparam eps")
    if s and r and a and r2:
        R.ok("/v1/reparam with a seed gives /v1/sample's draws and log-densities bit for bit",
             same(r["x"], s["samples"]) and same(r["log_prob"], s["log_prob"]), "")
        R.ok("/v1/sac/continuous/actor with a seed gives /v1/sample's actions and log-densities bit for bit",
             same(a["actions"], s["samples"]) and same(a["log_prob"], s["log_prob"]), "")
        R.ok("/v1/reparam with the returned eps answers what it answers with the seed", same(r2["grad"], r["grad"])
             and same(r2["x"], r["x"]), "")
    # categorical: entropy score, /v1/score with a seed and /v1/sample draw the same actions
    d = Dist("categorical", 9, 6, rng)
    s = call("/v1/sample", {"distribution": d.json(), "samples": 7, "seed": seed}, "consistency categorical sample")
    f = rng.normal(size=(9, 7))
    r1 = call("/v1/score", {"distribution": d.json(), "seed": seed, "f": f.tolist()}, "consistency score seed")
    r2 = call("/v1/score", {"distribution": d.json(), "x": np.asarray(s["samples"]).tolist() if s else [], "f": f.tolist()}, "consistency score x")
    if r1 and r2:
        R.ok("/v1/score with a seed equals /v1/score with /v1/sample's draws", same({k: v for k, v in r1.items() if k != "seed"}, r2), "")
    # the Boltzmann policy's actions are /v1/sample's draws of logits Q/α (the same noise)
    Q = rng.normal(size=(9, 4))
    al = 0.5
    p1 = call("/v1/sac/discrete/policy", {"q": Q.tolist(), "alpha": al, "samples": 6, "seed": seed}, "consistency policy")
    s1 = call("/v1/sample", {"distribution": {"type": "categorical", "logits": (Q / al).tolist()}, "samples": 6, "seed": seed},
              "consistency policy sample")
    if p1 and s1:
        R.ok("/v1/sac/discrete/policy draws the actions /v1/sample draws from logits Q/α", same(p1["actions"], s1["samples"]),
             "%s vs %s" % (p1["actions"][:2], s1["samples"][:2]))
    # defaults: entropy M = 64, sample M = 1, policy none; a generated seed is echoed and replays
    d = Dist("normal", 2, 2, rng)
    r = call("/v1/entropy", {"distribution": d.json(), "estimator": "score"}, "default samples")
    if r:
        R.ok("entropy: default samples is 64 and a seed is generated", r.get("samples") == 64 and isinstance(r.get("seed"), int),
             str({k: r.get(k) for k in ("samples", "seed")}))
    st, js, raw = post("/v1/sample", {"distribution": d.json()})
    if R.ok("sample without seed or samples", st == 200, raw[:200]):
        R.ok("sample: default samples is 1, seed generated", np.asarray(js["samples"]).shape == (2, 1, 2) and isinstance(js.get("seed"), int), raw[:200])
        st2, _, raw2 = post("/v1/sample", {"distribution": d.json(), "seed": js["seed"]})
        R.ok("sample: the generated seed replays byte-identically", raw2 == raw, "%s\n%s" % (raw[:200], raw2[:200]))
    st, js, raw = post("/v1/sac/discrete/policy", {"q": [[1.0, 2.0]], "alpha": 0.3, "samples": 3})
    R.ok("policy with samples and no seed: a seed is generated and echoed", st == 200 and isinstance(js.get("seed"), int), raw[:200])
    # concurrency: the same large request from 4 threads at once answers the same bytes
    import threading
    dl = Dist("tanh_normal", 2000, 4, rng, bounds=True)
    body = {"distribution": dl.json(), "estimator": "reparam", "samples": 8, "seed": 4, "output": "base64"}
    ref = post("/v1/entropy", body)[2]
    outs = []

    def worker():
        c = Client(C_URL)
        for _ in range(3):
            outs.append(c.request("POST", "/v1/entropy", body)[2])
        c.close()
    ts = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    R.ok("a large request sent 12 times from 4 threads at once answers the same bytes", len(outs) == 12 and all(o == ref for o in outs),
         "%d answers, %d differ" % (len(outs), sum(o != ref for o in outs)))
    # another server with one HTTP thread and one worker answers the same bytes
    if SERVER2:
        c2 = Client(SERVER2)
        bodies = [("/v1/entropy", body),
                  ("/v1/sac/continuous/actor", {"distribution": dl.json(), "alpha": 0.2, "seed": 3, "samples": 4,
                                                "dq_da": tensor(rng.normal(size=(2000, 4, 4)), "float64"), "output": "base64"}),
                  ("/v1/entropy", {"distribution": Dist("categorical", 3000, 9, rng, param="head").json(), "estimator": "score",
                                   "samples": 8, "seed": 2, "output": "base64"})]
        for pth, b in bodies:
            a1 = C.request("POST", pth, b)
            a2 = c2.request("POST", pth, b)
            R.ok("thread count does not change the answer (%s, 1 worker vs default)" % pth, a1[0] == a2[0] == 200 and a1[2] == a2[2],
                 "%s %s" % (a1[2][:200], a2[2][:200]))
        c2.close()


def check_ignored(rng):
    """Known fields that do not apply are accepted and ignored: the answer is the same bytes without them."""
    cat = Dist("categorical", 3, 4, rng).json()
    nor = Dist("normal", 3, 2, rng).json()
    pairs = [
        ("/v1/entropy", {"distribution": cat}, {"estimator": "exact", "samples": 5, "seed": 3, "baseline": "none"}),
        ("/v1/entropy", {"distribution": cat}, {"samples": 1, "baseline": "loo"}),
        ("/v1/entropy", {"distribution": nor, "estimator": "reparam", "samples": 5, "seed": 3}, {"baseline": "none"}),
        ("/v1/entropy", {"distribution": nor}, {"distribution": dict(nor, reduction="sum")}),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "q": [[1.0, 2.0]], "alpha": 0.2}, {"baseline": "none", "samples": 3, "reduction": "sum"}),
        ("/v1/sac/discrete/policy", {"q": [[0.1, 2.0]], "alpha": 0.2}, {"samples": 0, "seed": 4}),
    ]
    for pth, base, extra in pairs:
        st1, _, raw1 = post(pth, base)
        st2, _, raw2 = post(pth, dict(base, **extra))
        R.ok("ignored fields %s on %s leave the answer unchanged" % (sorted(extra), pth), st1 == st2 == 200 and raw1 == raw2,
             "%s %s\n%s %s" % (st1, raw1[:200], st2, raw2[:200]))
    # an item over the limits on its own is a 413 item; the others are answered
    st, js, raw = post("/v1/batch", {"requests": [{"op": "sample", "body": {"distribution": cat, "samples": 10 ** 8}},
                                                  {"op": "entropy", "body": {"distribution": cat}}]})
    R.ok("batch: an item over the limits is a 413 item, the others are answered", st == 200 and
         [it["status"] for it in js["responses"]] == [413, 200], raw[:300])


def check_numbers(rng):
    """Numbers go through the JSON layer exactly: /v1/score's value with M = 1 is f itself."""
    import struct
    r = np.random.default_rng(5)
    vals = [0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
            -1.7976931348623157e308, 1e23, 9007199254740993.0, 0.1, 1 / 3, 1e-310, 123456789012345678901234567890.0]
    bits = r.integers(0, 2 ** 63, size=3000, dtype=np.int64).astype(np.uint64) | (r.integers(0, 2, size=3000).astype(np.uint64) << np.uint64(63))
    v = bits.view(np.float64)
    vals += [float(x) for x in v[np.isfinite(v)]]
    vals += [float(x) for x in r.uniform(-1, 1, 1000) * 10.0 ** r.integers(-30, 30, 1000)]
    B = len(vals)

    def echo(texts):
        body = ('{"distribution": {"type": "categorical", "logits": {"dtype": "float64", "shape": [%d, 1], "data": "%s"}}, '
                '"x": {"dtype": "int32", "shape": [%d, 1], "data": "%s"}, "f": [%s], "baseline": "none"}'
                % (len(texts), base64.b64encode(np.zeros(len(texts)).tobytes()).decode(), len(texts),
                   base64.b64encode(np.zeros(len(texts), dtype=np.int32).tobytes()).decode(), ",".join("[%s]" % t for t in texts)))
        st, js, raw = post("/v1/score", body)
        return st, raw
    st, raw = echo([repr(x) for x in vals])
    if R.ok("numbers: echo status", st == 200, raw[:300]):
        got = json.loads(raw, parse_float=lambda t: t, parse_int=lambda t: t)["value"]
        bad = [(x, g) for x, g in zip(vals, got) if struct.pack("<d", x) != struct.pack("<d", float(g))]
        R.ok("numbers: %d doubles (subnormals, extremes, random bits) print back to the same double" % B, not bad, str(bad[:5]))
        longer = [(g, repr(x)) for x, g in zip(vals, got) if len(g) > len(repr(x).replace("e+", "e").replace("e-0", "e-")) + 3]
        R.ok("numbers: printed no longer than the shortest round-trip form (+3 characters of notation)", not longer, str(longer[:5]))
    texts = ["%.40e" % x for x in r.uniform(-1, 1, 1500) * 10.0 ** r.integers(-300, 300, 1500)]
    texts += ["9007199254740993", "1" + "0" * 300, "0." + "0" * 400 + "1", "2.4703282292062327e-324",
              "2.4703282292062328e-324", "12345678901234567890123456789", "179769313486231580793728971405301e276", "7e-1", "-0.0e5"]
    st, raw = echo(texts)
    if R.ok("numbers: long decimal literals status", st == 200, raw[:300]):
        got = json.loads(raw, parse_int=float)["value"]  # an integer-looking output is a double too
        bad = [(t, g, float(t)) for t, g in zip(texts, got) if float(t) != g]
        R.ok("numbers: long decimal literals are read as the nearest double", not bad, str(bad[:5]))
    st, raw = echo(["1" + "0" * 400])
    R.ok("numbers: an integer literal past the largest double is a 400 naming it", st == 400 and json.loads(raw)["error"].get("field") == "f[0][0]", raw[:300])


def check_ops(rng):
    for pth, code in (("/healthz", 200), ("/readyz", 200), ("/v1/info", 200), ("/openapi.yaml", 200), ("/metrics", 200), ("/nope", 404)):
        st, hd, raw = C.request("GET", pth)
        R.ok("GET %s is %d" % (pth, code), st == code, "%s %s" % (st, raw[:200]))
        if code == 200:
            st2, hd2, raw2 = C.request("HEAD", pth)
            R.ok("HEAD %s is 200 with no body" % pth, st2 == 200 and raw2 == b"", "%s %s" % (st2, raw2[:100]))
    st, hd, raw = C.request("POST", "/healthz", {})
    R.ok("POST /healthz is 405 with Allow: GET, HEAD", st == 405 and hd.get("allow") == "GET, HEAD", "%s %s" % (st, hd.get("allow")))
    st, hd, raw = C.request("GET", "/v1/info")
    info = json.loads(raw)
    R.ok("/v1/info lists the distributions, estimators and operations", info.get("distributions") == ["categorical", "normal", "tanh_normal"]
         and info.get("estimators", {}).get("tanh_normal") == ["score", "reparam"] and "sac/continuous/actor" in info.get("operations", []), raw[:300])
    # K = 1: entropy 0, gradient 0, every draw 0
    r = call("/v1/entropy", {"distribution": {"type": "categorical", "logits": [[0.3], [-2.0]]}}, "K=1 entropy")
    if r:
        R.ok("K=1: exact entropy 0 and gradient 0", r["entropy"] == [0, 0] and np.all(np.asarray(r["grad"]["logits"]) == 0), str(r))
    r = call("/v1/sac/discrete/actor", {"logits": [[0.3]], "actions": [[0, 0, 0]], "q": [[1.0, 2.0, 0.5]], "alpha": 0.2}, "K=1 sampled actor")
    if r:
        R.ok("K=1: sampled actor loss = -mean q, gradient 0", abs(r["loss"][0] + 3.5 / 3) < 1e-15 and np.all(np.asarray(r["grad"]["logits"]) == 0), str(r))


# ---- the error contract


def field_ok(got, exp):
    """the field named, or a path inside it (`q[0]` for a row of q whose length disagrees)"""
    return isinstance(got, str) and (got == exp or got.startswith(exp + "[") or got.startswith(exp + "."))


def check_errors(rng):
    cat = {"type": "categorical", "logits": [[0.1, 2.0, -1.0]]}
    nor = {"type": "normal", "loc": [[0.0, 1.0]], "log_scale": [[-1.0, 0.5]]}
    tn = {"type": "tanh_normal", "loc": [[0.0, 1.0]], "log_scale": [[-1.0, 0.5]]}
    E = [
        # (path, body, status, code, field)
        ("/v1/entropy", {"distribution": cat, "estimater": "exact"}, 400, "invalid_argument", "estimater"),
        ("/v1/entropy", {"distribution": dict(tn), "estimator": "exact"}, 422, "unsupported", "estimator"),
        ("/v1/entropy", {"distribution": cat, "estimator": "reparam"}, 422, "unsupported", "estimator"),
        ("/v1/reparam", {"distribution": cat, "seed": 1, "grad_x": [[[1.0]]]}, 422, "unsupported", "distribution.type"),
        ("/v1/entropy", {"distribution": cat, "estimator": "exact", "samples": -5}, 400, "invalid_argument", "samples"),
        ("/v1/entropy", {"distribution": cat, "estimator": "score", "samples": 1}, 400, "invalid_argument", "samples"),
        ("/v1/entropy", {"distribution": cat, "estimator": "score", "samples": 4, "seed": 2 ** 53}, 400, "invalid_argument", "seed"),
        ("/v1/entropy", {"distribution": cat, "estimator": "score", "samples": 4, "seed": -1}, 400, "invalid_argument", "seed"),
        ("/v1/entropy", {"distribution": {"type": "normal", "loc": [[0.0]], "scale": [[0.0]]}}, 400, "invalid_argument", "distribution.scale[0][0]"),
        ("/v1/entropy", {"distribution": {"type": "normal", "loc": [[0.0]], "scale": [[1.0]], "log_scale": [[0.0]]}}, 400, "invalid_argument", None),
        ("/v1/entropy", {"distribution": {"type": "normal", "loc": [[0.0]]}}, 400, "invalid_argument", "distribution.log_scale"),
        ("/v1/entropy", {"distribution": dict(tn, low=[-1, -1])}, 400, "invalid_argument", "distribution.high"),
        ("/v1/entropy", {"distribution": dict(tn, low=[1, -1], high=[1, 1])}, 400, "invalid_argument", None),
        ("/v1/entropy", {"distribution": {"type": "categorical", "logits": [[0.1, 2.0], [1.0]]}}, 400, "invalid_argument", None),
        ("/v1/entropy", {"distribution": {"type": "categorical", "logits": [[0.1, "a"]]}}, 400, "invalid_argument", "distribution.logits[0][1]"),
        ("/v1/entropy", {"distribution": {"type": "gamma", "loc": [[0.0]]}}, 400, "invalid_argument", "distribution.type"),
        ("/v1/entropy", {"distribution": dict(cat, loc=[[0.0]])}, 400, "invalid_argument", "distribution.loc"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "q": [[1.0, 2.0]], "alpha": -0.2}, 400, "invalid_argument", "alpha"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "q": [[1.0, 2.0]], "alpha": 0}, 400, "invalid_argument", "alpha"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "q": [[1.0, 2.0]]}, 400, "invalid_argument", "alpha"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "q": [[1.0, 2.0, 3.0]], "alpha": 0.2}, 400, "invalid_argument", "q"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "actions": [[0, 2]], "q": [[1.0, 2.0]], "alpha": 0.2}, 400, "invalid_argument", "actions[0][1]"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "actions": [[0, 1]], "q": [[1.0, 2.0, 3.0]], "alpha": 0.2}, 400, "invalid_argument", "q"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "actions": [[0]], "q": [[1.0]], "alpha": 0.2}, 400, "invalid_argument", "baseline"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "actions": [[0, 1]], "q": [[1.0, 2.0]], "alpha": 0.2, "samples": 3}, 400, "invalid_argument", "samples"),
        ("/v1/sac/discrete/actor", {"logits": [[0.1, 2.0]], "actions": [[0.5, 1]], "q": [[1.0, 2.0]], "alpha": 0.2}, 400, "invalid_argument", "actions[0][0]"),
        ("/v1/sac/discrete/policy", {"q": [[1.0, 2.0]], "alpha": 0.5, "samples": -1}, 400, "invalid_argument", "samples"),
        ("/v1/reparam", {"distribution": nor, "seed": 1, "eps": [[[0.1, 0.2]]], "grad_x": [[[1.0, 0.0]]]}, 400, "invalid_argument", "seed"),
        ("/v1/reparam", {"distribution": nor, "grad_x": [[[1.0, 0.0]]]}, 400, "invalid_argument", "eps"),
        ("/v1/reparam", {"distribution": nor, "seed": 1, "samples": 2, "grad_x": [[[1.0, 0.0]]]}, 400, "invalid_argument", None),
        ("/v1/reparam", {"distribution": nor, "eps": [[[0.1, 0.2]]], "grad_x": [[[1.0, 0.0, 1.0]]]}, 400, "invalid_argument", "grad_x"),
        ("/v1/score", {"distribution": nor, "f": [[1.0, 2.0]]}, 400, "invalid_argument", "x"),
        ("/v1/score", {"distribution": nor, "seed": 1, "x": [[[0.1, 0.2], [0.3, 0.4]]], "f": [[1.0, 2.0]]}, 400, "invalid_argument", None),
        ("/v1/score", {"distribution": cat, "eps": [[[0.1]]], "f": [[1.0]]}, 400, "invalid_argument", "eps"),
        ("/v1/score", {"distribution": cat, "x": [[0, 1]], "f": [[1.0, 2.0, 3.0]]}, 400, "invalid_argument", "f"),
        ("/v1/score", {"distribution": cat, "x": [[0]], "f": [[1.0]]}, 400, "invalid_argument", "baseline"),
        ("/v1/sac/continuous/actor", {"distribution": nor, "alpha": 0.2, "seed": 1, "dq_da": [[[1.0, 0.0]]]}, 400, "invalid_argument", None),
        ("/v1/sac/continuous/actor", {"distribution": tn, "alpha": 0.2, "dq_da": [[[1.0, 0.0]]]}, 400, "invalid_argument", "eps"),
        ("/v1/sac/continuous/actor", {"distribution": tn, "alpha": 0.2, "seed": 1, "eps": [[[0.1, 0.2]]], "dq_da": [[[1.0, 0.0]]]}, 400, "invalid_argument", "seed"),
        ("/v1/log_prob", {"distribution": cat, "x": [[3]]}, 400, "invalid_argument", "x[0][0]"),
        ("/v1/log_prob", {"distribution": dict(tn), "x": [[[1.5, 0.0]]]}, 400, "invalid_argument", "x[0][0][0]"),
        ("/v1/log_prob", {"distribution": nor, "x": [[[0.1, 0.2]]], "samples": 2}, 400, "invalid_argument", "samples"),
        ("/v1/sample", {"distribution": cat, "samples": 0}, 400, "invalid_argument", "samples"),
        ("/v1/sample", {"distribution": cat, "samples": 2.5}, 400, "invalid_argument", "samples"),
        ("/v1/sample", {"distribution": cat, "samples": 10 ** 9}, 413, "payload_too_large", "samples"),
        ("/v1/entropy", {"distribution": {"type": "categorical", "logits": {"dtype": "float64", "shape": [2], "data": "AAAAAAAA8D8="}}}, 400, "invalid_argument", "distribution.logits"),
        ("/v1/entropy", {"distribution": cat, "output": "xml"}, 400, "invalid_argument", "output"),
        ("/v1/nope", {}, 404, "not_found", None),
        ("/v1/batch", {"requests": [], "x": 1}, 400, "invalid_argument", "x"),
    ]
    for pth, body, st_e, code, field in E:
        st, js, raw = post(pth, body)
        good = st == st_e and isinstance(js, dict) and js.get("error", {}).get("code") == code and \
            isinstance(js["error"].get("message"), str) and (field is None or field_ok(js["error"].get("field"), field))
        R.ok("error %s %s -> %d %s %s" % (pth, jdump(body)[:120], st_e, code, field or ""), good, "got %s %s" % (st, raw[:300]))
    # invalid JSON, NaN, 1e999, duplicate keys, multipart, compressed, method, HEAD
    raws = [
        ("/v1/entropy", b'{"distribution": ', {}, 400, "invalid_json", None),
        ("/v1/entropy", b'{"distribution": {"type": "categorical", "logits": [[NaN, 1]]}}', {}, 400, "invalid_json", None),
        ("/v1/entropy", b'{"distribution": {"type": "categorical", "logits": [[0.1, 2.0, 1e999]]}}', {}, 400, "invalid_argument", "distribution.logits[0][2]"),
        ("/v1/entropy", b'{"distribution": {"type": "categorical", "logits": [[0.1, 2.0]]}, "estimator": "exact", "estimator": "score"}', {}, 400, "invalid_argument", "estimator"),
        ("/v1/entropy", b'{"distribution": {"type": "categorical", "logits": [[0.1, 2.0]]}}', {"Content-Type": "multipart/form-data; boundary=x"}, 415, "unsupported_media_type", None),
        ("/v1/entropy", b'{"distribution": {"type": "categorical", "logits": [[0.1, 2.0]]}}', {"Content-Encoding": "gzip"}, 415, "unsupported_media_type", None),
        ("/v1/entropy", b'{"distribution": {"type": "categorical", "logits": [[0.1, 2.0]]}}', {"Content-Type": "application/x-www-form-urlencoded"}, 200, None, None),
        ("/v1/entropy", b'[1, 2]', {}, 400, None, None),
    ]
    for pth, raw_b, hd, st_e, code, field in raws:
        st, js, raw = post(pth, raw_b, hd)
        good = st == st_e and (code is None or (js and js.get("error", {}).get("code") == code)) and \
            (field is None or field_ok(js["error"].get("field"), field))
        R.ok("error raw %s %s %s -> %d %s %s" % (pth, raw_b[:70], hd, st_e, code, field or ""), good, "got %s %s" % (st, raw[:300]))
    st, hd, raw = C.request("GET", "/v1/entropy")
    R.ok("GET on a computing path: 405 with Allow: POST", st == 405 and hd.get("allow") == "POST"
         and json.loads(raw)["error"]["code"] == "method_not_allowed", "%s %s %s" % (st, hd.get("allow"), raw[:200]))
    # outputs that are not finite are refused, edges that are finite are answered
    st, js, raw = post("/v1/entropy", {"distribution": {"type": "categorical", "logits": [[1e308, -1e308]]}})
    R.ok("entropy of logits [1e308, -1e308] is 0 with gradient 0", st == 200 and js["entropy"] == [0.0]
         and js["grad"]["logits"] == [[0.0, 0.0]], raw[:300])
    st, js, raw = post("/v1/entropy", {"distribution": {"type": "categorical", "logits": [[1e4, -1e4, 0.0]]}})
    R.ok("exact entropy with logits of ±1e4 is finite", st == 200 and abs(js["entropy"][0]) < 1e-300 + 1e-12, raw[:300])
    st, js, raw = post("/v1/sample", {"distribution": {"type": "normal", "loc": [[0.0]], "log_scale": [[1000.0]]}, "seed": 1})
    R.ok("exp(log_scale) overflowing is a 400 naming log_scale", st == 400 and "log_scale" in js["error"].get("field", ""), raw[:300])
    st, js, raw = post("/v1/entropy", {"distribution": {"type": "normal", "loc": [[0.0]], "log_scale": [[1000.0]]}})
    R.ok("exact normal entropy does not need exp(log_scale): log_scale 1000 answers 1001.42", st == 200
         and abs(js["entropy"][0] - (1000 + 0.5 * (LOG2PI + 1))) < 1e-9, raw[:300])
    st, js, raw = post("/v1/sac/discrete/policy", {"q": [[0.0, -1e308]], "alpha": 1e-300})
    R.ok("a policy log-probability that is not finite is a 400 naming q", st == 400 and js["error"].get("field", "").startswith("q"), raw[:300])


# ============================================================================================


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


C_URL = None
SERVER2 = None


def main():
    global C, VERBOSE, C_URL, SERVER2
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("binary", nargs="?", default=os.path.join(here, "..", "build", "gradserve"))
    ap.add_argument("--url", help="check a server already running there instead of starting one")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("-v", "--verbose", action="store_true", help="list every passed check")
    ap.add_argument("--only", help="run only the check groups whose name contains this")
    args = ap.parse_args()
    VERBOSE = args.verbose
    proc = None
    t0 = time.time()
    if args.url:
        url = args.url
    else:
        port = args.port or free_port()
        url = "http://127.0.0.1:%d" % port
        if not os.access(args.binary, os.X_OK):
            sys.exit("no gradserve binary at %s (run make, or pass its path)" % args.binary)
        proc = subprocess.Popen([args.binary, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    C = Client(url)
    C_URL = url
    proc2 = None
    if proc:
        port2 = free_port()
        SERVER2 = "http://127.0.0.1:%d" % port2
        proc2 = subprocess.Popen([args.binary, "--host", "127.0.0.1", "--port", str(port2), "--log-level", "warn", "--threads", "1",
                                  "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                st, _, _ = C.request("GET", "/readyz")
                if st == 200:
                    break
            except OSError:
                pass
            if proc and proc.poll() is not None:
                sys.exit("gradserve exited at start: " + proc.stderr.read().decode()[-500:])
            time.sleep(0.05)
        rng = np.random.default_rng(20261129)
        per_endpoint = [check_entropy, check_sample, check_log_prob, check_reparam, check_score, check_discrete_actor,
                        check_policy, check_continuous_actor]
        once = [check_base64, check_single_row, check_batch, check_split, check_consistency, check_ignored, check_numbers, check_statistics,
                check_ops, check_errors]
        # regimes: small batches; then batches past the 8-row SIMD lanes with a tail, odd M and hard parameters
        # (logits of spread ~20, log_scale in [-4, 1.5], saturated tanh)
        regimes = [(3, 9, 0, 4), (11, 13, 0, 2), (19, 32, 1, 37), (600, 16, 0, 67), (9, 8, 2, 5)]
        plan = [(g, r) for r in regimes for g in per_endpoint] + [(g, regimes[0]) for g in once]
        global NB, MS, HARD, KC
        for g, (NB, MS, HARD, KC) in plan:
            if args.only and args.only not in g.__name__:
                continue
            t = time.time()
            try:
                g(rng)
            except Exception as e:  # a crash of the checker is a failure too, but the others still run
                import traceback
                traceback.print_exc()
                R.ok(g.__name__ + " ran without an exception", False, repr(e))
            print("%-24s B=%-3d M=%-3d K=%-3d hard=%d %.1fs" % (g.__name__, NB, MS, KC, HARD, time.time() - t), flush=True)
    finally:
        C.close()
        for p in (proc, proc2):
            if p:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
    npass = sum(R.passed.values())
    if VERBOSE:
        for k, v in sorted(R.passed.items()):
            print("ok   %s%s" % (k, " (x%d)" % v if v > 1 else ""))
    print("\n%d checks passed (%d distinct), %d failed, %.1fs" % (npass, len(R.passed), len(R.failed), time.time() - t0))
    for name, detail in R.failed:
        print("FAILED: " + name)
    sys.exit(1 if R.failed else 0)


if __name__ == "__main__":
    main()
