/**
 * The report command:
 *
 *   npm run bench:report -- bench/results/2026-11-30-h200.jsonl [more.jsonl ...] [--name NAME] [--out-dir DIR]
 *   npm run bench:report -- FILES --readme      (prints only the README's Performance table; writes nothing)
 *
 * Writes DIR/NAME.md and DIR/NAME.svg (default: bench/results/ under the working directory, NAME = the
 * first file's base name) and prints the markdown. Low-precision rows from other entries (with `format`)
 * are paired with the torch anchors of their precision: pass their files with the rest.
 */
import * as fs from 'fs';
import * as path from 'path';
import {Row, markdown, normalizeRow, readmeTable, svgChart} from './report_lib';

/** Every line of the files, in order: meta, check, measurement and error lines. */
function readRows(files: string[]): Row[] {
  return files.flatMap((f) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.trim())
      .map((l, i) => {
        try {
          return normalizeRow(JSON.parse(l) as Row);
        } catch (e) {
          throw new Error(`${f}:${i + 1}: not a JSON line: ${(e as Error).message}`);
        }
      }));
}

function main(): void {
  const argv = process.argv.slice(2);
  const files: string[] = [];
  let name: string | null = null;
  let outDir = path.join('bench', 'results');
  let readme = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--name') name = argv[++i];
    else if (argv[i] === '--readme') readme = true;
    else if (argv[i] === '--out-dir') outDir = argv[++i];
    else files.push(argv[i]);
  }
  if (files.length === 0) {
    console.error('usage: npm run bench:report -- RESULTS.jsonl [MORE.jsonl ...] [--name NAME] [--out-dir DIR] [--readme]');
    process.exit(2);
  }
  name ??= path.basename(files[0]).replace(/\.jsonl$/, '');
  const rows = readRows(files);
  if (readme) {
    console.log(readmeTable(rows));
    return;
  }
  const md = markdown(rows, name);
  const device = rows.find((r) => r.impl === 'meta' && r.backend === 'webgpu')?.device ?? '';
  // A device run also times the tiny check shapes; the chart shows them only when they are all there is.
  const isTiny = (r: (typeof rows)[number]) => typeof r.shape === 'string' && r.shape.startsWith('tiny-');
  const shaped = rows.filter((r) => typeof r.shape === 'string' && r.H != null);  // MoE rows, not routing alone
  const tiny = shaped.length > 0 && shaped.every(isTiny);
  const svg = svgChart(tiny ? rows : rows.filter((r) => !isTiny(r)), `fusedMoE: ${name}${device ? ` (${device})` : ''}` +
      (tiny ? ': tiny shapes, a functional run, not a performance measurement' : ''));
  fs.mkdirSync(outDir, {recursive: true});
  fs.writeFileSync(path.join(outDir, `${name}.svg`), svg);
  fs.writeFileSync(path.join(outDir, `${name}.md`), `${md}\n![fusedMoE against the anchors](${name}.svg)\n`);
  console.log(md);
  console.error(`wrote ${path.join(outDir, `${name}.md`)} and ${name}.svg`);
}

main();
