/**
 * Reads a whole file as bytes with progress, in Node and in browsers:
 *   - a plain path or a file:// URL in Node: streamed from disk (fs.createReadStream);
 *   - anything else (http(s), relative URLs in a browser): fetch, reading the response body stream.
 * Node's fs is reached through `process.getBuiltinModule`, so browser bundles never see an `fs` import.
 */

/** Called as bytes arrive: `total` is the file size, or null when the server does not say. */
export type OnBytesProgress = (loadedBytes: number, totalBytes: number | null) => void;

export interface FetchBytesOptions {
  onProgress?: OnBytesProgress;
  /** The fetch to use (default: globalThis.fetch), e.g. one that adds credentials. */
  fetchFunc?: typeof fetch;
}

interface NodeProcess {
  versions?: {node?: string};
  getBuiltinModule?: (name: string) => unknown;
}

function nodeModules(): {fs: typeof import('fs'); url: typeof import('url')} | null {
  const proc = (globalThis as {process?: NodeProcess}).process;
  if (!proc?.versions?.node || typeof proc.getBuiltinModule !== 'function') return null;
  return {fs: proc.getBuiltinModule('fs') as typeof import('fs'), url: proc.getBuiltinModule('url') as typeof import('url')};
}

const isRemote = (s: string) => /^(https?|blob|data):/i.test(s);

export async function fetchBytes(source: string | URL, o: FetchBytesOptions = {}): Promise<Uint8Array> {
  const s = source.toString();
  const node = nodeModules();
  if (node && !isRemote(s)) return readFileWithProgress(node, s, o.onProgress);
  return fetchWithProgress(s, o);
}

async function readFileWithProgress(node: NonNullable<ReturnType<typeof nodeModules>>, source: string,
    onProgress?: OnBytesProgress): Promise<Uint8Array> {
  const path = /^file:/i.test(source) ? node.url.fileURLToPath(source) : source;
  let size: number;
  try {
    size = (await node.fs.promises.stat(path)).size;
  } catch (e) {
    throw new Error(`cannot read '${source}': ${(e as Error).message}`);
  }
  const out = new Uint8Array(size);
  let loaded = 0;
  onProgress?.(0, size);
  await new Promise<void>((resolve, reject) => {
    const stream = node.fs.createReadStream(path, {highWaterMark: 1 << 22});
    stream.on('data', (chunk) => {
      const bytes = chunk as Buffer;
      if (loaded + bytes.length > size) {
        stream.destroy();
        reject(new Error(`'${source}' grew while it was read (more than ${size} bytes)`));
        return;
      }
      out.set(bytes, loaded);
      loaded += bytes.length;
      onProgress?.(loaded, size);
    });
    stream.on('error', (e) => reject(new Error(`cannot read '${source}': ${e.message}`)));
    stream.on('end', () => resolve());
  });
  if (loaded !== size) throw new Error(`'${source}' has ${loaded} bytes, fewer than the ${size} it had when opened`);
  return out;
}

async function fetchWithProgress(url: string, o: FetchBytesOptions): Promise<Uint8Array> {
  const fetchFunc = o.fetchFunc ?? globalThis.fetch;
  if (typeof fetchFunc !== 'function') throw new Error(`cannot fetch '${url}': no fetch in this environment`);
  let res: Response;
  try {
    res = await fetchFunc(url);
  } catch (e) {
    // Node's fetch rejects with a bare "fetch failed" TypeError; the reason is in its cause.
    const cause = (e as {cause?: {message?: string}}).cause?.message;
    throw new Error(`cannot fetch '${url}': ${(e as Error).message}${cause ? ` (${cause})` : ''}`);
  }
  if (res == null || typeof res.ok !== 'boolean') {
    throw new Error(`cannot fetch '${url}': 'fetchFunc' must return a Response but returned ${String(res)}`);
  }
  if (!res.ok) throw new Error(`cannot fetch '${url}': HTTP ${res.status} ${res.statusText}`);
  // A compressed response's content-length counts the compressed bytes, not the ones we read.
  const header = res.headers.get('content-encoding') ? null : res.headers.get('content-length');
  const total = header != null && /^\d+$/.test(header) ? Number(header) : null;
  if (!res.body) {
    const bytes = new Uint8Array(await res.arrayBuffer());
    o.onProgress?.(bytes.byteLength, total ?? bytes.byteLength);
    return bytes;
  }
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let loaded = 0;
  o.onProgress?.(0, total);
  for (;;) {
    let chunk: ReadableStreamReadResult<Uint8Array>;
    try {
      chunk = await reader.read();
    } catch (e) {
      throw new Error(`cannot fetch '${url}': the download failed after ${loaded} bytes (${(e as Error).message})`);
    }
    const {done, value} = chunk;
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    o.onProgress?.(loaded, total);
  }
  if (total != null && loaded !== total) {
    throw new Error(`'${url}' ended after ${loaded} of its ${total} bytes: the download was cut short`);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}
