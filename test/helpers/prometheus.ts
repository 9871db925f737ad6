// Scrapes a /metrics endpoint over HTTP and reads the Prometheus text format
// the way a Prometheus server would, so that tests check what an operator
// sees: values by name and labels, and names that follow the conventions.
import type { Test } from 'tap';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

export interface Exposition {
  contentType: string;
  families: Map<string, Family>;
  /** The value of the sample with this name and (at least) these labels; undefined when absent. */
  value(name: string, labels?: Record<string, string>): number | undefined;
}

export async function httpGet(address: string, path: string, method = 'GET'): Promise<{ status: number; body: string; contentType: string }> {
  const res = await fetch(`http://${address}${path}`, { method, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') ?? '' };
}

export async function scrape(address: string): Promise<Exposition> {
  const res = await httpGet(address, '/metrics');
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}: ${res.body}`);
  return parseExposition(res.body, res.contentType);
}

const SAMPLE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;

export function parseExposition(text: string, contentType = ''): Exposition {
  const families = new Map<string, Family>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) {
      f = { name, type: 'untyped', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      const f = family(meta[2] ?? '');
      if (meta[1] === 'HELP') f.help = meta[3] ?? '';
      else f.type = meta[3] ?? '';
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE_RE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const name = m[1] ?? '';
    const labels: Record<string, string> = {};
    const labelText = m[2] ?? '';
    LABEL_RE.lastIndex = 0;
    for (let l = LABEL_RE.exec(labelText); l; l = LABEL_RE.exec(labelText)) {
      labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    const base = families.has(name) ? name : name.replace(/_(bucket|sum|count)$/, '');
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    family(families.has(base) ? base : name).samples.push({ name, labels, value });
  }
  return {
    contentType,
    families,
    value(name, labels = {}) {
      for (const f of families.values()) {
        for (const s of f.samples) {
          if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
        }
      }
      return undefined;
    },
  };
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Words that make a metric a time: it must then be in seconds. */
const TIME_WORDS = /(^|_)(duration|latency|time|wait|lag|delay|margin|age|uptime)(_|$)/;
const NON_BASE_UNITS = /(^|_)(ms|msec|milliseconds|us|microseconds|ns|nanoseconds|minutes|hours|days|kb|kib|mb|mib|gb|gib|percent)(_|$)/;

/**
 * Asserts the Prometheus naming rules for every family: valid names and label
 * names, counters ending in _total (and nothing else does), times in seconds,
 * base units only, help text present; families of `prefix` checked for it.
 */
export function checkNaming(t: Test, exposition: Exposition, ownPrefix: string): void {
  const problems: string[] = [];
  for (const f of exposition.families.values()) {
    if (!NAME_RE.test(f.name)) problems.push(`${f.name}: not a valid metric name`);
    if (f.help.trim() === '') problems.push(`${f.name}: no HELP text`);
    if (!['counter', 'gauge', 'histogram', 'summary'].includes(f.type)) problems.push(`${f.name}: type ${f.type}`);
    if (f.type === 'counter' && !f.name.endsWith('_total')) problems.push(`${f.name}: a counter must end in _total`);
    if (f.type !== 'counter' && f.name.endsWith('_total')) problems.push(`${f.name}: only counters end in _total`);
    if (TIME_WORDS.test(f.name) && !/_seconds(_total)?$/.test(f.name)) problems.push(`${f.name}: a time must be in seconds (_seconds)`);
    if (NON_BASE_UNITS.test(f.name)) problems.push(`${f.name}: use base units (seconds, bytes, ratios)`);
    for (const s of f.samples) {
      for (const label of Object.keys(s.labels)) {
        if (!LABEL_NAME_RE.test(label) || label.startsWith('__')) problems.push(`${f.name}: label ${label} is not a valid label name`);
      }
    }
  }
  const own = [...exposition.families.keys()].filter((n) => n.startsWith(ownPrefix));
  t.ok(own.length > 0, `metrics named ${ownPrefix}*`);
  t.same(problems, [], 'every metric follows the Prometheus naming rules');
}
