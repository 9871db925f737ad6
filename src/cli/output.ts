// Human-readable output by default, JSON for scripts (--json).
//
// Exit codes of every command: 0 success; 1 the operation failed (the
// coordinator refused or could not be reached, or the job waited for did not
// succeed); 2 the command line is wrong (unknown command or option, a bad
// value, a missing argument).

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** A command line that cannot work as given: exit code 2, with what to write instead. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A plain text table: columns padded to their widest cell. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** --poll-seconds as milliseconds: a number of seconds from 0.05 to 3600. */
export function parsePollSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0.05 || n > 3600) {
    throw new UsageError(`--poll-seconds must be a number of seconds from 0.05 to 3600, such as 1 or 0.5, not "${value}"`);
  }
  return Math.round(n * 1000);
}
