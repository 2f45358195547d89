#!/usr/bin/env node
// sac_continuous.mjs - a continuous-action trainer in JavaScript that learns through gradserve
// (Node 18 or later: its built-in fetch; no packages).
//
// Eight independent one-dimensional tanh-normal policies, one per batch row, each learning the
// action a critic likes: q_b(a) = -4 (a - c_b)^2, with c_b from -0.7 to 0.7. One SAC step:
//   1. POST /v1/sample with a seed: M actions per row (and their noise);
//   2. the critic's value and slope at those actions, here in closed form;
//   3. POST /v1/sac/continuous/actor with the same seed and samples, so the server regenerates
//      exactly those actions (the script checks they come back bit for bit), and dq_da;
//   4. loc -= lr grad.loc, log_scale -= lr grad.log_scale.
//
// Usage: node examples/node/sac_continuous.mjs [--url URL] [--steps N] [--token T] [--check]
//   --check  exit 1 unless every row's mean action tanh(loc) ends within 0.05 of c_b (make test
//            runs it so).

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const url = opt("--url", "http://127.0.0.1:8080");
const token = opt("--token", "");
const steps = Number(opt("--steps", "300"));
const check = args.includes("--check");

const B = 8, M = 16, alpha = 0.01, lr = 0.05;
const c = Array.from({ length: B }, (_, b) => -0.7 + (1.4 * b) / (B - 1));

async function post(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(url + path, { method: "POST", headers, body: JSON.stringify(body) });
  const out = await res.json();
  if (!res.ok) {
    const e = out.error || {};
    throw new Error(`${path}: HTTP ${res.status} ${e.code}: ${e.message} (field ${e.field})`);
  }
  return out;
}

const loc = Array.from({ length: B }, () => [0.0]);
const logScale = Array.from({ length: B }, () => [0.0]);

for (let step = 0; step <= steps; step++) {
  const distribution = { type: "tanh_normal", loc, log_scale: logScale };
  const seed = 1000 + step;
  const drawn = await post("/v1/sample", { distribution, samples: M, seed });
  const a = drawn.samples; // [B][M][1]
  const q = a.map((row, b) => row.map(([x]) => -4 * (x - c[b]) ** 2));
  const dqDa = a.map((row, b) => row.map(([x]) => [-8 * (x - c[b])]));
  const out = await post("/v1/sac/continuous/actor",
                         { distribution, alpha, seed, samples: M, q, dq_da: dqDa });
  // The actor saw the very actions the critic was asked about.
  if (JSON.stringify(out.actions) !== JSON.stringify(a)) throw new Error("the actions differ");
  for (let b = 0; b < B; b++) {
    loc[b][0] -= lr * out.grad.loc[b][0];
    logScale[b][0] -= lr * out.grad.log_scale[b][0];
  }
  if (step % 100 === 0) {
    const loss = out.loss.reduce((s, v) => s + v, 0) / B;
    console.log(`step ${String(step).padStart(4)}  actor loss ${loss.toFixed(4)}  ` +
                `scale of row 0 ${Math.exp(logScale[0][0]).toFixed(4)}`);
  }
}

let worst = 0;
for (let b = 0; b < B; b++) {
  const mean = Math.tanh(loc[b][0]);
  worst = Math.max(worst, Math.abs(mean - c[b]));
  console.log(`row ${b}: critic's best ${c[b].toFixed(3)}, policy's tanh(loc) ${mean.toFixed(3)}`);
}
console.log(`worst distance ${worst.toFixed(4)}`);
if (check && !(worst < 0.05)) {
  console.error("sac_continuous: the policies did not learn (want every row within 0.05)");
  process.exit(1);
}
