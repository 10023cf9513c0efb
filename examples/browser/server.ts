/**
 * A static server for the browser example, on localhost only:
 *   /                       examples/browser/index.html
 *   /dist/main.js           the bundle from `npm run build:browser`
 *   /checkpoints/<file>     the checkpoints (test/fixtures/*.safetensors and their .json configs)
 *   /models/<name>/<file>   whole-model folders (test/fixtures/models/<name>/)
 *
 *   npm run example:browser            # builds the bundle, serves on http://localhost:8080/
 *   PORT=0 tsx examples/browser/server.ts   # any free port
 */
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import type {AddressInfo} from 'net';

const ROOT = path.join(__dirname, '..', '..');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.json': 'application/json',
  '.map': 'application/json', '.safetensors': 'application/octet-stream',
};

/** URL path → file, confined to the example and the checkpoints (no `..` escapes). */
function resolve(urlPath: string, checkpointsDir: string): string | null {
  const clean = path.posix.normalize(decodeURIComponent(urlPath.split('?')[0]));
  if (clean === '/' || clean === '/index.html') return path.join(__dirname, 'index.html');
  const checkpoint = /^\/checkpoints\/([\w.-]+\.(?:safetensors|json))$/.exec(clean);
  if (checkpoint) return path.join(checkpointsDir, checkpoint[1]);
  // Model folders: test/fixtures/models/<name>/<file> (config.json, safetensors, shard index).
  const model = /^\/models\/([\w.-]+)\/([\w.-]+\.(?:safetensors|json))$/.exec(clean);
  if (model) return path.join(checkpointsDir, 'models', model[1], model[2]);
  const bundle = /^\/dist\/([\w.-]+\.js(?:\.map)?)$/.exec(clean);
  if (bundle) return path.join(__dirname, 'dist', bundle[1]);
  return null;
}

export interface ExampleServer { url: string; close(): Promise<void> }

export function startServer(port = 0, checkpointsDir = path.join(ROOT, 'test', 'fixtures')): Promise<ExampleServer> {
  const server = http.createServer((req, res) => {
    const file = resolve(req.url ?? '/', checkpointsDir);
    if (file == null || !fs.existsSync(file)) {
      res.writeHead(404, {'content-type': 'text/plain'}).end(`not found: ${req.url}`);
      return;
    }
    const size = fs.statSync(file).size;
    // content-length lets the page's progress bar know the total.
    res.writeHead(200, {'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': size, 'cache-control': 'no-store'});
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolveStart, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const {port: actual} = server.address() as AddressInfo;
      resolveStart({
        url: `http://localhost:${actual}/`,
        close: () => new Promise((done) => { server.closeAllConnections(); server.close(() => done()); }),
      });
    });
  });
}

if (require.main === module) {
  if (!fs.existsSync(path.join(__dirname, 'dist', 'main.js'))) {
    console.error('examples/browser/dist/main.js is missing: run `npm run build:browser` first');
    process.exit(1);
  }
  startServer(Number(process.env.PORT ?? 8080)).then(({url}) => {
    console.log(`tfjs-fused-moe browser example: ${url}  (Ctrl-C to stop)`);
    console.log('WebGPU needs a browser that has it (Chrome/Edge 113+, or chromium --enable-unsafe-webgpu on Linux).');
  });
}
