// tests/k8s-validate.mjs - checks docker/k8s/*.yaml against the Kubernetes API's JSON schemas (kubernetes-models), rejects unknown fields, and checks the numbers the manifests, the Dockerfile and compose.yaml share.
//
// Usage: node tests/k8s-validate.mjs NODE_MODULES_DIR [REPO_DIR]
// (tests/k8s-validate.sh installs the packages and runs it). Last line: "N passed, M failed".
import { createRequire } from "node:module";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const modules = resolve(process.argv[2] || "node_modules");
const repo = resolve(process.argv[3] || ".");
const yaml = createRequire(join(modules, "noop.js"))("js-yaml");

let passed = 0;
let failed = 0;
const check = (ok, what, detail) => {
  if (ok) {
    passed++;
    console.log(`ok   ${what}`);
  } else {
    failed++;
    console.log(`FAIL ${what}${detail ? `: ${detail}` : ""}`);
  }
};

// ---- schema validation, with unknown fields ------------------------------------------------
// kubernetes-models compiles the API's OpenAPI schemas into validators; like
// the API server, they allow fields they do not know. To catch typos
// ("readinesProbe") as `kubectl --validate=strict` would, the document is
// wrapped in proxies that record which keys the validator reads: a key it
// never looked at is not in the schema. Maps (labels, resources) are read by
// enumerating their keys, which marks every key as known.
const reads = new WeakMap();
function track(o) {
  if (o === null || typeof o !== "object") return o;
  if (!reads.has(o)) reads.set(o, new Set());
  const read = reads.get(o);
  return new Proxy(o, {
    get(t, k, r) {
      if (typeof k === "string") read.add(k);
      return track(Reflect.get(t, k, r));
    },
    ownKeys(t) {
      for (const k of Reflect.ownKeys(t)) read.add(k);
      return Reflect.ownKeys(t);
    },
  });
}
function unknownFields(o, path, out) {
  if (o === null || typeof o !== "object") return out;
  const read = reads.get(o) || new Set();
  for (const k of Object.keys(o)) {
    if (!Array.isArray(o) && !read.has(k)) out.push(`${path}/${k}`);
    else unknownFields(o[k], `${path}/${k}`, out);
  }
  return out;
}

// apps/v1 Deployment -> IoK8sApiAppsV1Deployment; v1 Service -> IoK8sApiCoreV1Service
function schemaFile(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["core", apiVersion];
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  const name = `IoK8sApi${cap(group.split(".")[0])}${cap(version)}${kind}`;
  return join(modules, "kubernetes-models", "_schemas", `${name}.js`);
}

const dir = join(repo, "docker", "k8s");
const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
check(files.length > 0, `manifests in ${dir}`, "none found");
const objects = [];
for (const f of files) {
  const text = readFileSync(join(dir, f), "utf8");
  check(/^# docker\/k8s\/\S+ - /.test(text), `${f}: opens with a one-line comment`);
  let docs;
  try {
    docs = yaml.loadAll(text).filter((d) => d != null);
  } catch (e) {
    check(false, `${f}: YAML`, e.message);
    continue;
  }
  for (const doc of docs) {
    const what = `${f}: ${doc.kind}/${doc.metadata?.name}`;
    const file = typeof doc.apiVersion === "string" && typeof doc.kind === "string" ?
      schemaFile(doc.apiVersion, doc.kind) : "";
    if (!existsSync(file)) {
      check(false, `${what}: schema`, `no schema for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    const { validate } = await import(pathToFileURL(file).href);
    const ok = validate(track(doc));
    const errors = (validate.errors || []).map((e) =>
      `${e.instancePath || "/"} ${e.keyword} ${JSON.stringify(e.params)}`);
    check(ok, `${what}: matches the ${doc.apiVersion} ${doc.kind} schema`, errors.slice(0, 8).join("; "));
    const unknown = unknownFields(doc, "", []);
    check(unknown.length === 0, `${what}: no unknown fields`, unknown.join(", "));
    objects.push({ file: f, doc });
  }
}

// ---- what the manifests, the Dockerfile and compose.yaml must agree on --------------------
const find = (kind) => objects.filter((o) => o.doc.kind === kind).map((o) => o.doc);
const matches = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v);
const dockerfile = readFileSync(join(repo, "docker", "Dockerfile"), "utf8");
const imageDrain = Number((dockerfile.match(/GRADSERVE_DRAIN_TIMEOUT=(\d+)/) || [])[1]);
check(imageDrain > 0, "Dockerfile sets GRADSERVE_DRAIN_TIMEOUT", "not found");
const imagePort = Number((dockerfile.match(/GRADSERVE_PORT=(\d+)/) || [])[1]);

const deployments = find("Deployment");
check(deployments.length === 1, "one Deployment", `${deployments.length}`);
for (const d of deployments) {
  const pod = d.spec?.template?.spec || {};
  const labels = d.spec?.template?.metadata?.labels;
  check(matches(d.spec?.selector?.matchLabels, labels), `Deployment ${d.metadata.name}: selector matches the pod labels`);
  check(pod.securityContext?.runAsNonRoot === true, `Deployment ${d.metadata.name}: runAsNonRoot`);
  for (const c of pod.containers || []) {
    const name = `Deployment ${d.metadata.name}, container ${c.name}`;
    const env = Object.fromEntries((c.env || []).filter((e) => "value" in e).map((e) => [e.name, e.value]));
    const r = c.resources || {};
    check(r.requests?.cpu && r.requests?.memory && r.limits?.cpu && r.limits?.memory,
      `${name}: CPU and memory requests and limits`, JSON.stringify(r));
    check(c.livenessProbe?.httpGet?.path === "/healthz", `${name}: liveness probe on /healthz`);
    check(c.readinessProbe?.httpGet?.path === "/readyz", `${name}: readiness probe on /readyz`);
    const port = Number(env.GRADSERVE_PORT || imagePort || 8080);
    check((c.ports || []).some((p) => p.containerPort === port), `${name}: exposes GRADSERVE_PORT ${port}`);
    const pre = c.lifecycle?.preStop;
    const pause = pre?.sleep?.seconds ??
      Number((pre?.exec?.command || []).join(" ").match(/^(?:\/bin\/)?sleep (\d+)$/)?.[1]);
    check(pause > 0, `${name}: preStop pause before the drain`, JSON.stringify(pre));
    const drain = Number(env.GRADSERVE_DRAIN_TIMEOUT || imageDrain);
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    check(grace > (pause || 0) + drain,
      `${name}: terminationGracePeriodSeconds ${grace} > preStop ${pause} s + drain timeout ${drain} s`);
  }
}
for (const s of find("Service")) {
  const target = deployments.find((d) => matches(s.spec?.selector, d.spec?.template?.metadata?.labels));
  check(target, `Service ${s.metadata.name}: selects the Deployment's pods`);
  const ports = (target?.spec.template.spec.containers || []).flatMap((c) => c.ports || []);
  for (const p of s.spec?.ports || []) {
    check(ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort),
      `Service ${s.metadata.name}: targetPort ${p.targetPort} is a container port`);
  }
}
for (const h of find("HorizontalPodAutoscaler")) {
  const ref = h.spec?.scaleTargetRef || {};
  const target = deployments.find((d) => ref.kind === "Deployment" && d.metadata.name === ref.name);
  check(target, `HorizontalPodAutoscaler ${h.metadata.name}: scales the Deployment`);
  check((h.spec?.metrics || []).some((m) => m.type === "Resource" && m.resource?.name === "cpu"),
    `HorizontalPodAutoscaler ${h.metadata.name}: scales on CPU`);
  check(h.spec?.minReplicas >= 1 && h.spec?.maxReplicas >= h.spec?.minReplicas,
    `HorizontalPodAutoscaler ${h.metadata.name}: 1 <= minReplicas <= maxReplicas`);
}
for (const p of find("PodDisruptionBudget")) {
  check(deployments.some((d) => matches(p.spec?.selector?.matchLabels, d.spec?.template?.metadata?.labels)),
    `PodDisruptionBudget ${p.metadata.name}: selects the Deployment's pods`);
}

// compose.yaml: Docker's stop grace period must outlast the drain.
const composeFile = join(repo, "docker", "compose.yaml");
if (existsSync(composeFile)) {
  const compose = yaml.load(readFileSync(composeFile, "utf8"));
  const seconds = (d) => {
    const m = String(d ?? "10s").match(/^(?:(\d+)m)?(?:(\d+)s)?$/);
    return m ? Number(m[1] || 0) * 60 + Number(m[2] || 0) : NaN;
  };
  const servers = Object.entries(compose.services || {}).filter(([, s]) =>
    (s.build?.dockerfile || "").endsWith("Dockerfile") && !/nginx/.test(s.build.dockerfile));
  check(servers.length > 0, "compose.yaml: a gradserve service built from docker/Dockerfile");
  for (const [name, s] of servers) {
    // environment: a map, or a list of NAME=value
    const env = Array.isArray(s.environment) ?
      Object.fromEntries(s.environment.map((e) => [e.split("=")[0], e.split("=").slice(1).join("=")])) :
      s.environment || {};
    const drain = Number(env.GRADSERVE_DRAIN_TIMEOUT || imageDrain);
    const grace = seconds(s.stop_grace_period);
    check(grace > drain, `compose.yaml: ${name} stop_grace_period ${grace} s > drain timeout ${drain} s`);
  }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
