// Generators for property-based tests of hostile input (fast-check): job spec
// documents, valid and mutated, and the knobs every fuzz test shares.
import fc from 'fast-check';
import { COMMIT_RULES, EXTRACT_MODES, STOP_SIGNALS, ULIMIT_NAMES } from '../../src/spec/job-spec.ts';

/**
 * Cases per property: the default keeps `npm test` short; FUZZ_RUNS raises it
 * for a long run (FUZZ_RUNS=100000 node scripts/with-test-env.ts tap test/...).
 * `scale` shrinks FUZZ_RUNS for properties whose cases cost more (a gRPC round trip).
 */
export function fuzzRuns(defaultRuns: number, scale = 1): number {
  const fromEnv = Number(process.env.FUZZ_RUNS);
  if (!Number.isInteger(fromEnv) || fromEnv <= 0) return defaultRuns;
  return Math.max(1, Math.round(fromEnv * scale));
}

/** Seed from FUZZ_SEED when set, so that a failure printed by fast-check can be replayed. */
export function fuzzParams<T>(numRuns: number): fc.Parameters<T> {
  const seed = Number(process.env.FUZZ_SEED);
  return { numRuns, ...(Number.isInteger(seed) ? { seed } : {}) };
}

/** Counts what a property saw, for the figures of docs/RELIABILITY.md. */
export class FuzzTally {
  tried = 0;
  crashed = 0;
  hung = 0;
  unclear = 0;
  slowestMs = 0;

  /** Runs one case, timing it; a case over hangMs counts as hung. */
  time<T>(hangMs: number, fn: () => T): T {
    const start = performance.now();
    try {
      return fn();
    } finally {
      const ms = performance.now() - start;
      this.tried++;
      if (ms > this.slowestMs) this.slowestMs = ms;
      if (ms > hangMs) this.hung++;
    }
  }

  line(what: string): string {
    return `tried ${this.tried} ${what}, crashed ${this.crashed}, hung ${this.hung}, unclear errors ${this.unclear} (slowest case ${this.slowestMs.toFixed(1)} ms)`;
  }
}

const lower = 'abcdefghijklmnopqrstuvwxyz0123456789';
const lowerChar = fc.constantFrom(...lower.split(''));
const word = (min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: lowerChar, minLength: min, maxLength: max });

/** Text that stresses parsers: unicode, control characters, NUL, quotes, YAML indicators. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('\0', '\n', '\r', '\t', '"', "'", ':', '-', '&', '*', '!', '|', '>', '%', '@', '`', '#', '{', '}', '[', ']', ',', '?', '\\', '\u2028', '\uFEFF', '\uD800', '😀', 'é'), maxLength: 30 }),
  fc.constantFrom('', ' ', '~', 'null', 'true', 'NaN', '.nan', '.inf', '-.inf', '0x10', '1e400', '-0', '<<', '${HOME}', '../..', '/', '\0', 'a'.repeat(70_000)),
);

/** Any JSON-like value, with nasty strings and extreme numbers. */
export const anyValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, true, false, 0, -1, 1.5, Number.MAX_SAFE_INTEGER + 2, 1e308, -1e308, Number.NaN, Number.POSITIVE_INFINITY),
    fc.integer(),
    fc.double(),
    nastyString,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(word(1, 8), nastyString), tie('value'), { maxKeys: 4 }),
  ),
})).value;

const s3Url = fc.tuple(word(3, 12), fc.array(word(1, 8), { maxLength: 3 })).map(([b, parts]) => `s3://b${b}/${parts.join('/')}`.replace(/\/$/, ''));
const containerDir = fc.array(word(1, 8), { minLength: 1, maxLength: 3 }).map((p) => `/${p.join('/')}`);
const envName = fc.tuple(fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ_'.split('')), fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_'.split('')), maxLength: 12 }))
  .map(([a, b]) => a + b)
  .filter((n) => !n.startsWith('STEVEDORE_'));

/**
 * A valid spec document as a user writes it (camelCase, optional sections
 * present or not). Every path in it is unique, so the cross-section checks pass.
 */
export const validSpecDoc: fc.Arbitrary<Record<string, unknown>> = fc
  .record(
    {
      name: fc.tuple(lowerChar, fc.string({ unit: fc.constantFrom(...`${lower}._-`.split('')), maxLength: 40 })).map(([a, b]) => a + b),
      image: fc.tuple(fc.option(fc.constantFrom('registry.example.com:5000/', 'ghcr.io/'), { nil: '' }), word(1, 10), fc.option(fc.constantFrom(':1', ':2.4.0-cuda12', ':latest'), { nil: '' })).map(([r, p, tag]) => `${r}team/${p}${tag}`),
      command: fc.oneof(fc.array(fc.string({ maxLength: 30 }), { maxLength: 5 }), fc.string({ maxLength: 40 })),
      env: fc.dictionary(envName, fc.oneof(fc.string({ maxLength: 30 }), fc.integer(), fc.boolean()), { maxKeys: 5 }),
      resources: fc.record(
        {
          gpus: fc.integer({ min: 0, max: 64 }),
          cpus: fc.double({ min: 0, max: 4096, noNaN: true }),
          memory: fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.constantFrom('512Mi', '2Gi', '1g', '100', '1.5Gi')),
          shm: fc.oneof(fc.integer({ min: 0, max: 2 ** 34 }), fc.constantFrom('64Mi', '1Gi')),
        },
        { requiredKeys: [] },
      ),
      ulimits: fc.oneof(
        fc.uniqueArray(fc.record({ name: fc.constantFrom(...ULIMIT_NAMES), soft: fc.integer({ min: -1, max: 2 ** 31 }), hard: fc.integer({ min: -1, max: 2 ** 31 }) }), { maxLength: 3, selector: (u) => u.name }),
        fc.dictionary(fc.constantFrom(...ULIMIT_NAMES), fc.integer({ min: -1, max: 1 << 20 }), { maxKeys: 3 }),
      ),
      hostIpc: fc.boolean(),
      hostNetwork: fc.boolean(),
      stopSignal: fc.constantFrom(...STOP_SIGNALS),
      stopGraceSeconds: fc.integer({ min: 0, max: 3600 }),
      pullPolicy: fc.constantFrom('if-not-present', 'always', 'never'),
      workingDir: fc.oneof(fc.constant(''), containerDir),
      checkpoint: fc.record(
        {
          destination: s3Url,
          endpoint: fc.constantFrom('default', 'backup'),
          rule: fc.constantFrom(...COMMIT_RULES),
          marker: fc.constantFrom('COMMIT', 'done.txt'),
          quiescenceSeconds: fc.integer({ min: 1, max: 3600 }),
          keep: fc.integer({ min: 1, max: 10_000 }),
          keepEvery: fc.integer({ min: 0, max: 1_000_000 }),
          signal: fc.constantFrom(...STOP_SIGNALS),
          resume: fc.boolean(),
        },
        { requiredKeys: ['destination'] },
      ),
      input: fc.record(
        {
          url: fc.oneof(word(3, 10).map((w) => `https://data.example.com/${w}.tar`), word(3, 10).map((w) => `s3://bucket-${w}/set/${w}.tar.gz`)),
          endpoint: fc.constantFrom('default', 'datasets'),
          extract: fc.constantFrom(...EXTRACT_MODES),
        },
        { requiredKeys: ['url'] },
      ),
      output: fc.record(
        { destination: s3Url, endpoint: fc.constantFrom('default'), intervalSeconds: fc.integer({ min: 1, max: 86_400 }) },
        { requiredKeys: ['destination'] },
      ),
      restart: fc.record(
        {
          maxPreemptions: fc.integer({ min: 0, max: 1000 }),
          maxFailures: fc.integer({ min: 0, max: 1000 }),
          retryableExitCodes: fc.array(fc.integer({ min: -1, max: 255 }), { maxLength: 5 }),
        },
        { requiredKeys: [] },
      ),
      mountCount: fc.integer({ min: 0, max: 3 }),
      mountSources: fc.array(fc.array(word(1, 8), { minLength: 1, maxLength: 3 }).map((p) => p.join('/')), { minLength: 3, maxLength: 3 }),
      mountReadOnly: fc.array(fc.boolean(), { minLength: 3, maxLength: 3 }),
    },
    { requiredKeys: ['name', 'image'] },
  )
  .map((r) => {
    const { mountCount, mountSources, mountReadOnly, checkpoint, input, output, ...doc } = r as typeof r & { mountCount?: number; mountSources?: string[]; mountReadOnly?: boolean[] };
    const out: Record<string, unknown> = { ...doc };
    // Distinct container paths: /mnt/0.., /ckpt, /input, /output never collide.
    if (mountCount) out.mounts = Array.from({ length: mountCount }, (_, i) => ({ source: mountSources?.[i] ?? 'data', target: `/mnt/${i}`, readOnly: mountReadOnly?.[i] ?? false }));
    if (checkpoint) out.checkpoint = { path: '/ckpt', ...checkpoint };
    if (input) out.input = { target: '/input', ...input };
    if (output) out.output = { path: '/output', ...output };
    return out;
  });

/** One field of a spec and values it can never accept. */
export interface FieldMutation {
  /** The field's path as the error message writes it, such as "resources.gpus" or "mounts[0].target". */
  path: string;
  /** Sets the bad value into a document (creating the section when missing). */
  apply: (doc: Record<string, unknown>, value: unknown) => void;
  bad: fc.Arbitrary<unknown>;
}

function setter(...keys: (string | number)[]): (doc: Record<string, unknown>, value: unknown) => void {
  return (doc, value) => {
    let node: Record<string | number, unknown> = doc;
    keys.slice(0, -1).forEach((key, i) => {
      const next = node[key];
      if (typeof next !== 'object' || next === null) {
        node[key] = typeof keys[i + 1] === 'number' ? [] : {};
      }
      node = node[key] as Record<string | number, unknown>;
    });
    node[keys[keys.length - 1] as string | number] = value;
  };
}

const notString = fc.oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.dictionary(word(1, 4), fc.integer(), { minKeys: 1, maxKeys: 2 }), fc.array(fc.integer(), { minLength: 1, maxLength: 2 }));
const notNumber = fc.oneof(nastyString.filter((s) => s !== ''), fc.boolean(), fc.constant(null), fc.array(fc.integer(), { maxLength: 2 }), fc.constant({}));
const notInt = fc.oneof(notNumber, fc.constantFrom(0.5, 1.5, 1e-9));
const huge = fc.constantFrom(1e12, 1e300, Number.MAX_SAFE_INTEGER + 2, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY);
const notBool = fc.oneof(fc.constantFrom('yes', 'no', 'true', 'on', 0, 1, null), fc.constant([]));
const intOutside = (min: number, max: number): fc.Arbitrary<unknown> => fc.oneof(notInt, huge, fc.integer({ min: max + 1, max: max + 1_000_000 }), fc.integer({ min: min - 1_000_000, max: min - 1 }));
const notIn = (allowed: readonly string[]): fc.Arbitrary<unknown> => fc.oneof(notString, nastyString.filter((s) => !allowed.includes(s)), fc.constantFrom(...allowed.map((a) => a.toLowerCase() === a ? a.toUpperCase() : a.toLowerCase())).filter((s) => !allowed.includes(s)));
const notContainerPath = fc.oneof(notString, fc.constantFrom('relative/dir', 'a', '/a/../b', '/..', ''), fc.constant(`/${'a'.repeat(1100)}`));
const notRelativePath = fc.oneof(notString, fc.constantFrom('/abs', '../up', 'a/../../b', 'a\0b', '', 'C:\\x'), fc.constant('a'.repeat(1100)));
const notS3 = fc.oneof(notString, fc.constantFrom('http://bucket/x', 's3://', 's3://AB/x', 's3://ok-bucket/../x', 's3://a/x', ''));

/** Fields of the spec, each with values it must refuse. */
export const FIELD_MUTATIONS: readonly FieldMutation[] = [
  { path: 'name', apply: setter('name'), bad: fc.oneof(notString, fc.constantFrom('', 'Upper', 'has space', '-lead', 'a'.repeat(64), 'ü')) },
  { path: 'image', apply: setter('image'), bad: fc.oneof(notString, fc.constantFrom('', 'team/UPPER', 'a b', 'x:', '@sha256:zz'), fc.constant(`a/${'b'.repeat(600)}`)) },
  { path: 'command', apply: setter('command'), bad: fc.oneof(fc.integer(), fc.boolean(), fc.constant({ a: 1 }), fc.constant([1, 2]), fc.constant(Array.from({ length: 300 }, () => 'x'))) },
  { path: 'env.FOO', apply: setter('env', 'FOO'), bad: fc.oneof(fc.constant(null), fc.constant({ a: 1 }), fc.constant([1])) },
  { path: 'env', apply: (doc, value) => setter('env')(doc, { [String(value)]: 'x' }), bad: fc.oneof(fc.constantFrom('1ABC', 'has space', 'A-B', '', 'STEVEDORE_JOB', 'é')) },
  { path: 'resources.gpus', apply: setter('resources', 'gpus'), bad: intOutside(0, 64) },
  { path: 'resources.cpus', apply: setter('resources', 'cpus'), bad: fc.oneof(notNumber, huge, fc.constantFrom(-1, -0.5, 4097)) },
  { path: 'resources.memory', apply: setter('resources', 'memory'), bad: fc.oneof(fc.constantFrom('12 parsecs', '-1Gi', 'Gi', '1e3', -1, 1.5, true, null, '99999999999999999Ti'), fc.constant({})) },
  { path: 'resources.shm', apply: setter('resources', 'shm'), bad: fc.constantFrom('lots', -5, 0.25, false) },
  { path: 'resources.memoryBytes', apply: setter('resources', 'memoryBytes'), bad: fc.oneof(notInt, fc.constantFrom(-1, Number.NaN)) },
  { path: 'mounts[0].source', apply: (doc, v) => setter('mounts')(doc, [{ source: v, target: '/m0' }]), bad: notRelativePath },
  { path: 'mounts[0].target', apply: (doc, v) => setter('mounts')(doc, [{ source: 'data', target: v }]), bad: notContainerPath },
  { path: 'mounts[0].readOnly', apply: (doc, v) => setter('mounts')(doc, [{ source: 'data', target: '/m0', readOnly: v }]), bad: notBool },
  { path: 'ulimits', apply: setter('ulimits'), bad: fc.oneof(fc.constantFrom('nofile=10', 7, true), fc.constant([{ name: 'nofile', soft: 'x', hard: 1 }]), fc.constant({ nofile: -2 }), fc.constant({ bogus: 1 })) },
  { path: 'hostIpc', apply: setter('hostIpc'), bad: notBool },
  { path: 'hostNetwork', apply: setter('hostNetwork'), bad: notBool },
  { path: 'stopSignal', apply: setter('stopSignal'), bad: notIn(STOP_SIGNALS) },
  { path: 'stopGraceSeconds', apply: setter('stopGraceSeconds'), bad: intOutside(0, 3600) },
  { path: 'pullPolicy', apply: setter('pullPolicy'), bad: notIn(['if-not-present', 'always', 'never']) },
  { path: 'workingDir', apply: setter('workingDir'), bad: fc.oneof(notString, fc.constantFrom('relative', 'x/y')) },
  { path: 'checkpoint.path', apply: (doc, v) => setter('checkpoint')(doc, { path: v, destination: 's3://bucket/x' }), bad: fc.oneof(notContainerPath, fc.constant('/')) },
  { path: 'checkpoint.destination', apply: (doc, v) => setter('checkpoint')(doc, { path: '/ckpt', destination: v }), bad: notS3 },
  { path: 'checkpoint.rule', apply: (doc, v) => setter('checkpoint')(doc, { path: '/ckpt', destination: 's3://bucket/x', rule: v }), bad: notIn(COMMIT_RULES) },
  { path: 'checkpoint.keep', apply: (doc, v) => setter('checkpoint')(doc, { path: '/ckpt', destination: 's3://bucket/x', keep: v }), bad: intOutside(1, 10_000) },
  { path: 'checkpoint.quiescenceSeconds', apply: (doc, v) => setter('checkpoint')(doc, { path: '/ckpt', destination: 's3://bucket/x', quiescenceSeconds: v }), bad: intOutside(1, 3600) },
  { path: 'checkpoint.endpoint', apply: (doc, v) => setter('checkpoint')(doc, { path: '/ckpt', destination: 's3://bucket/x', endpoint: v }), bad: fc.oneof(notString, fc.constantFrom('UPPER', 'a b', '-x', '')) },
  { path: 'input.url', apply: (doc, v) => setter('input')(doc, { url: v, target: '/in' }), bad: fc.oneof(notString, fc.constantFrom('ftp://x/y', 'https://', 'has space', 's3://b/', 'file:///etc/passwd'), fc.constant(`https://x/${'a'.repeat(5000)}`)) },
  { path: 'input.extract', apply: (doc, v) => setter('input')(doc, { url: 'https://x/y', target: '/in', extract: v }), bad: notIn(EXTRACT_MODES) },
  { path: 'output.intervalSeconds', apply: (doc, v) => setter('output')(doc, { path: '/out', destination: 's3://bucket/o', intervalSeconds: v }), bad: intOutside(1, 86_400) },
  { path: 'restart.maxPreemptions', apply: setter('restart', 'maxPreemptions'), bad: intOutside(0, 1000) },
  { path: 'restart.retryableExitCodes[0]', apply: (doc, v) => setter('restart', 'retryableExitCodes')(doc, [v]), bad: intOutside(-1, 255) },
];

/** A valid document with one field set to a value it must refuse. */
export const mutatedSpecDoc: fc.Arbitrary<{ doc: Record<string, unknown>; path: string; value: unknown }> = fc
  .tuple(validSpecDoc, fc.constantFrom(...FIELD_MUTATIONS))
  .chain(([doc, mutation]) => mutation.bad.map((value) => {
    const copy = structuredClone(doc);
    // A checkpoint/input/output mutation brings its own section; a mount's target must not collide with it.
    delete copy.mounts;
    mutation.apply(copy, value);
    return { doc: copy, path: mutation.path, value };
  }));

/** A valid document with an unknown field added somewhere. */
export const unknownFieldDoc: fc.Arbitrary<{ doc: Record<string, unknown>; where: string; key: string }> = fc
  .tuple(validSpecDoc, fc.constantFrom('', 'resources', 'restart', 'checkpoint'), fc.constantFrom('gpu', 'Image', 'host_ipc', 'cmd', 'memory_bytes', 'x'))
  .map(([doc, where, key]) => {
    const copy = structuredClone(doc);
    if (where === '') copy[key] = true;
    else {
      const section = (copy[where] as Record<string, unknown> | undefined) ?? (where === 'checkpoint' ? { path: '/ckpt2', destination: 's3://bucket/x' } : {});
      copy[where] = { ...section, [key]: 1 };
    }
    return { doc: copy, where, key };
  });
