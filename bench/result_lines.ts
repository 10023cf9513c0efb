/**
 * Result lines of the device entries (gpu_check_tc.ts, gpu_check_int8.ts): printed, and with `--out FILE` also
 * appended to FILE. On the H200, Dawn prints shader warnings to the same terminal while a check runs, and a JSON
 * line that a warning splits is lost to any filter that drops the warnings (it happened: README, "Skipping
 * padding row blocks", trial 5); the file gets each line whole.
 */
import {appendFileSync} from 'fs';

export function resultLines(args: string[]): (line: string) => void {
  const i = args.indexOf('--out');
  const file = i >= 0 ? args[i + 1] : undefined;
  if (i >= 0 && (file == null || file.startsWith('--'))) throw new Error('--out: expected a file path after it');
  return (line: string) => {
    console.log(line);
    if (file != null) appendFileSync(file, `${line}\n`);
  };
}
