#!/usr/bin/env bash
# scripts/setup-libtensorflow.sh
#
# Makes @tensorflow/tfjs-node's 'tensorflow' backend work WITHOUT access to
# storage.googleapis.com (where tfjs-node's own install script downloads
# libtensorflow 2.9.1 and a prebuilt addon). Instead it:
#
#   1. downloads the tensorflow-cpu wheel from PyPI (pip, pinned version and
#      sha256), cached in $LIBTENSORFLOW_CACHE_DIR
#      (default: node_modules/.cache/libtensorflow);
#   2. installs @tensorflow/tfjs-node@4.22.0 with --no-save --ignore-scripts
#      (no download step; package.json / package-lock.json are not written);
#   3. extracts libtensorflow_cc.so.2, libtensorflow_framework.so.2 and the C
#      headers from the wheel into node_modules/@tensorflow/tfjs-node/deps,
#      laid out as tfjs-node's binding.gyp expects (libtensorflow.so ->
#      libtensorflow_cc.so.2);
#   4. builds the N-API addon with node-gyp (the copy bundled with npm)
#      into node_modules/@tensorflow/tfjs-node/lib/napi-v<N>/tfjs_binding.node;
#   5. verifies: backend 'tensorflow' loads, matMul is right, and the raw ops
#      TopKV2, Softmax, Sigmoid, GatherV2, BatchMatMulV2, UnsortedSegmentSum,
#      Cumsum execute through backend.executeSingleOutput/executeMultipleOutputs.
#
# Idempotent: when the backend already loads and passes step 5, it exits 0
# after ~1 s without touching anything. `npm ci` (wipes node_modules) or a
# plain `npm install` (prunes the --no-save tfjs-node) just make the next run
# redo steps 2-5 (about 30 s with a warm wheel cache).
#
# Requirements: Linux x86_64 (glibc >= 2.17, CPU with AVX), node >= 20 with
# npm >= 7, python3, and a C++ toolchain for node-gyp.
# Debian apt packages used (installed automatically when missing and running
# as root with apt-get available):  g++ make python3
# Optional: python3-pip (without pip the wheel is fetched through PyPI's JSON
# API with python3's urllib; the sha256 is checked either way).
#
# Project dependencies must be installed first (`npm ci`).
#
# Environment knobs:
#   LIBTENSORFLOW_CACHE_DIR  wheel cache dir (CI: point it at a cached path)
#   LIBTENSORFLOW_FORCE=1    skip the "already works" fast path, redo 2-5
#   PIP_INDEX_URL etc.       honoured by pip as usual
set -euo pipefail

# ---- pinned versions ---------------------------------------------------------
TFJS_NODE_VERSION="4.22.0"
TF_WHEEL_VERSION="2.12.1"   # oldest tensorflow-cpu wheel shipping libtensorflow_cc.so.2
TF_WHEEL_FILE="tensorflow_cpu-${TF_WHEEL_VERSION}-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
TF_WHEEL_SHA256="d05b8268da5bd87cf43d46da177e3b3ca39f2db0437e56c5e18351db4cde8679"
# -----------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TFJS_NODE_DIR="$ROOT/node_modules/@tensorflow/tfjs-node"
CACHE_DIR="${LIBTENSORFLOW_CACHE_DIR:-$ROOT/node_modules/.cache/libtensorflow}"
T0=$SECONDS

log()  { printf '[setup-libtensorflow %3ds] %s\n' "$((SECONDS - T0))" "$*"; }
die()  { printf '[setup-libtensorflow] ERROR: %s\n' "$*" >&2; exit 1; }

# Prints a summary and returns 0 iff the tensorflow backend works.
verify() {
  (cd "$ROOT" && TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}" node - <<'EOF'
const tf = require('@tensorflow/tfjs-node');
if (tf.getBackend() !== 'tensorflow') throw new Error(`backend is ${tf.getBackend()}`);
const be = tf.backend(), B = be.binding;
const eq = (name, got, want) => {
  const g = Array.from(got).map((v) => Math.round(v * 1e4) / 1e4);
  if (JSON.stringify(g) !== JSON.stringify(want)) {
    throw new Error(`${name}: got ${JSON.stringify(g)}, want ${JSON.stringify(want)}`);
  }
};
const type = (name, dtype) => ({name, type: B.TF_ATTR_TYPE, value: dtype === 'int32' ? B.TF_INT32 : B.TF_FLOAT});
const bool = (name, value) => ({name, type: B.TF_ATTR_BOOL, value});
tf.tidy(() => {
  eq('matMul', tf.matMul(tf.ones([2, 2]), tf.ones([2, 2])).dataSync(), [2, 2, 2, 2]);
  const x = tf.tensor2d([[1, 5, 3, 2], [4, 0, 9, 7]]);
  const [v, i] = be.executeMultipleOutputs('TopKV2', [bool('sorted', true), type('T', 'float32')], [x, tf.scalar(2, 'int32')], 2);
  eq('TopKV2 values', v.dataSync(), [5, 3, 9, 7]);
  eq('TopKV2 indices', i.dataSync(), [1, 2, 2, 3]);
  eq('Softmax', be.executeSingleOutput('Softmax', [type('T', 'float32')], [tf.tensor1d([0, Math.log(3)])]).dataSync(), [0.25, 0.75]);
  eq('Sigmoid', be.executeSingleOutput('Sigmoid', [type('T', 'float32')], [tf.tensor1d([0])]).dataSync(), [0.5]);
  eq('GatherV2', be.executeSingleOutput('GatherV2',
      [type('Tparams', 'float32'), type('Tindices', 'int32'), type('Taxis', 'int32'), {name: 'batch_dims', type: B.TF_ATTR_INT, value: 0}],
      [x, tf.tensor1d([1, 0], 'int32'), tf.scalar(0, 'int32')]).dataSync(), [4, 0, 9, 7, 1, 5, 3, 2]);
  eq('BatchMatMulV2', be.executeSingleOutput('BatchMatMulV2', [type('T', 'float32'), bool('adj_x', false), bool('adj_y', true)],
      [tf.ones([2, 1, 4]), tf.stack([x, x])]).dataSync(), [11, 20, 11, 20]);
  eq('UnsortedSegmentSum', be.executeSingleOutput('UnsortedSegmentSum',
      [type('T', 'float32'), type('Tindices', 'int32'), type('Tnumsegments', 'int32')],
      [tf.tensor1d([1, 2, 3, 4]), tf.tensor1d([0, 2, 0, 1], 'int32'), tf.scalar(3, 'int32')]).dataSync(), [4, 4, 2]);
  eq('Cumsum', be.executeSingleOutput('Cumsum', [type('T', 'float32'), type('Tidx', 'int32'), bool('exclusive', true), bool('reverse', false)],
      [tf.tensor1d([1, 2, 3, 4]), tf.scalar(0, 'int32')]).dataSync(), [0, 1, 3, 6]);
});
console.log(`tfjs-node ${tf.version['tfjs-node']} backend=${tf.getBackend()} libtensorflow=${B.TF_Version} ` +
    `gpu=${be.isUsingGpuDevice}; matMul + 7 raw ops OK`);
EOF
  )
}

# ---- 0. fast path --------------------------------------------------------------
if [[ "${LIBTENSORFLOW_FORCE:-0}" != 1 && -f "$TFJS_NODE_DIR/package.json" ]]; then
  if out="$(verify 2>&1)"; then
    log "already set up: $out"
    exit 0
  fi
  log "tfjs-node is present but its backend does not work yet; (re)building"
fi

# ---- 1. preconditions ------------------------------------------------------------
[[ "$(uname -s)" == Linux && "$(uname -m)" == x86_64 ]] ||
  die "only Linux x86_64 is supported (tensorflow-cpu manylinux2014 wheel); got $(uname -s) $(uname -m)"
command -v node >/dev/null && command -v npm >/dev/null || die "node and npm are required"
[[ -d "$ROOT/node_modules/@tensorflow/tfjs-core" ]] ||
  die "node_modules/@tensorflow/tfjs-core is missing: run 'npm ci' (or 'npm install') first"

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v make >/dev/null || missing+=(make)
command -v g++ >/dev/null || missing+=(g++)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing apt packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing build tools: ${missing[*]} (Debian: apt-get install ${missing[*]})"
  fi
fi

mkdir -p "$CACHE_DIR"
if command -v flock >/dev/null; then  # serialise concurrent runs
  exec 9>"$CACHE_DIR/.lock"
  flock 9
  # another run may have finished the job while we waited
  if [[ "${LIBTENSORFLOW_FORCE:-0}" != 1 && -f "$TFJS_NODE_DIR/package.json" ]] && out="$(verify 2>&1)"; then
    log "already set up: $out"
    exit 0
  fi
fi

# ---- 2. wheel ------------------------------------------------------------------
WHEEL="$CACHE_DIR/$TF_WHEEL_FILE"
sha_ok() { [[ -f "$1" ]] && echo "$TF_WHEEL_SHA256  $1" | sha256sum -c --status; }
if ! sha_ok "$WHEEL"; then
  rm -f "$WHEEL"
  dl="$CACHE_DIR/download.$$"
  rm -rf "$dl" && mkdir -p "$dl"
  log "downloading $TF_WHEEL_FILE from PyPI (~232 MB)"
  if python3 -m pip --version >/dev/null 2>&1; then
    printf 'tensorflow-cpu==%s --hash=sha256:%s\n' "$TF_WHEEL_VERSION" "$TF_WHEEL_SHA256" >"$dl/req.txt"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
      --python-version 3.10 --implementation cp --abi cp310 --platform manylinux2014_x86_64 \
      -d "$dl" -r "$dl/req.txt" || die "pip download of tensorflow-cpu==$TF_WHEEL_VERSION failed"
  else
    log "pip not available; using PyPI's JSON API"
    python3 - "$dl" "$TF_WHEEL_FILE" <<'EOF' || die "download of $TF_WHEEL_FILE failed"
import json, shutil, sys, urllib.parse, urllib.request
dest, name = sys.argv[1], sys.argv[2]
index = 'https://pypi.org/pypi/tensorflow-cpu/json'
rel = json.load(urllib.request.urlopen(index, timeout=60))['releases']
url = next(f['url'] for files in rel.values() for f in files if f['filename'] == name)
with urllib.request.urlopen(urllib.parse.urljoin(index, url), timeout=600) as r, open(f'{dest}/{name}', 'wb') as o:
    shutil.copyfileobj(r, o, 1 << 20)
EOF
  fi
  sha_ok "$dl/$TF_WHEEL_FILE" || die "sha256 mismatch for $TF_WHEEL_FILE"
  mv "$dl/$TF_WHEEL_FILE" "$WHEEL"
  rm -rf "$dl"
fi
log "wheel ok: $WHEEL"

# ---- 3. tfjs-node without its download step -------------------------------------
installed="$(node -p "try{require('$TFJS_NODE_DIR/package.json').version}catch(e){''}")"
if [[ "$installed" != "$TFJS_NODE_VERSION" ]]; then
  [[ -z "$installed" ]] || log "replacing tfjs-node $installed with $TFJS_NODE_VERSION"
  log "npm install --no-save --ignore-scripts @tensorflow/tfjs-node@$TFJS_NODE_VERSION"
  # --save-dev is needed as well: package.json lists tfjs-node as an *optional
  # peer*, and `npm install --no-save <pkg>` alone then says "up to date" and
  # installs nothing. With --no-save neither package.json nor the lockfile change.
  npm install --no-save --save-dev --ignore-scripts --no-audit --no-fund \
    "@tensorflow/tfjs-node@$TFJS_NODE_VERSION" >/dev/null ||
    die "npm install of @tensorflow/tfjs-node@$TFJS_NODE_VERSION failed"
  [[ -f "$TFJS_NODE_DIR/binding.gyp" ]] || die "npm did not install $TFJS_NODE_DIR"
fi

# ---- 4. stage deps/ as binding.gyp expects --------------------------------------
log "extracting libtensorflow + C headers into $TFJS_NODE_DIR/deps"
rm -rf "$TFJS_NODE_DIR/deps" "$TFJS_NODE_DIR/deps.tmp"
python3 - "$WHEEL" "$TFJS_NODE_DIR/deps.tmp" <<'EOF'
import os, shutil, sys, zipfile
wheel, deps = sys.argv[1:]
libs = {'tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'}
inc = ('tensorflow/include/tensorflow/c/', 'tensorflow/include/tensorflow/tsl/c/',
       'tensorflow/include/tensorflow/core/platform/ctstring',
       'tensorflow/include/tensorflow/tsl/platform/ctstring')
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if name in libs:
            out = os.path.join(deps, 'lib', os.path.basename(name))
        elif name.startswith(inc) and not name.endswith('/'):
            out = os.path.join(deps, 'include', name[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, 'wb') as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        n += 1
if n < 10 or not all(os.path.exists(os.path.join(deps, 'lib', os.path.basename(l))) for l in libs):
    sys.exit(f'unexpected wheel layout ({n} files extracted)')
EOF
(
  cd "$TFJS_NODE_DIR/deps.tmp/lib"
  # binding.gyp links -ltensorflow -ltensorflow_framework; the wheel's
  # libtensorflow_cc.so.2 carries the TF_*/TFE_* C API (SONAME libtensorflow_cc.so.2,
  # which is what ends up in the addon's DT_NEEDED).
  ln -s libtensorflow_cc.so.2 libtensorflow.so.2
  ln -s libtensorflow_cc.so.2 libtensorflow.so
  ln -s libtensorflow_framework.so.2 libtensorflow_framework.so
)
mv "$TFJS_NODE_DIR/deps.tmp" "$TFJS_NODE_DIR/deps"

# ---- 5. build the addon with node-gyp -------------------------------------------
NPM_DIR="$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)"
NODE_GYP="$NPM_DIR/node_modules/node-gyp/bin/node-gyp.js"
[[ -f "$NODE_GYP" ]] || die "node-gyp not found at $NODE_GYP (it ships with npm >= 7)"
# Build against the running node's own headers so node-gyp needs no download
# from nodejs.org (official tarballs / nodesource ship them in <prefix>/include/node).
gyp_args=()
NODE_PREFIX="$(node -p "require('path').resolve(process.execPath, '..', '..')")"
if [[ -n "${npm_config_nodedir:-}" ]]; then
  gyp_args+=("--nodedir=$npm_config_nodedir")
elif [[ -f "$NODE_PREFIX/include/node/node_api.h" && -f "$NODE_PREFIX/include/node/common.gypi" ]]; then
  gyp_args+=("--nodedir=$NODE_PREFIX")
else
  log "WARNING: no node headers in $NODE_PREFIX/include/node; node-gyp will try to download them"
fi
# Where tfjs-node looks for the addon (node-pre-gyp picks the napi version).
ADDON="$(cd "$TFJS_NODE_DIR" && node -p "require('@mapbox/node-pre-gyp').find(require.resolve('./package.json'))")"
NAPI="$(sed -n 's#.*/napi-v\([0-9][0-9]*\)/.*#\1#p' <<<"$ADDON")"
[[ -n "$NAPI" ]] || die "could not determine the N-API version from $ADDON"
log "building $ADDON (N-API $NAPI)"
(
  cd "$TFJS_NODE_DIR"
  node "$NODE_GYP" rebuild "${gyp_args[@]}" --jobs="$(nproc)" -- \
    -Dmodule_name=tfjs_binding -Dmodule_path="$(dirname "$ADDON")" -Dnapi_build_version="$NAPI"
) >"$CACHE_DIR/node-gyp.log" 2>&1 || {
  tail -n 40 "$CACHE_DIR/node-gyp.log" >&2
  die "node-gyp build failed (full log: $CACHE_DIR/node-gyp.log)"
}
[[ -f "$ADDON" ]] || die "build finished but $ADDON is missing"

# ---- 6. verify --------------------------------------------------------------------
if out="$(verify 2>&1)"; then
  log "done: $out"
else
  printf '%s\n' "$out" >&2
  die "tfjs-node's tensorflow backend does not work after the build (see above)"
fi
