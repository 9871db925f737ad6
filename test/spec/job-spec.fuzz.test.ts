// Hostile job specs: generated texts and documents never crash or hang the
// parser; every refusal is SPEC_INVALID naming the field; valid specs survive
// the trip over the wire unchanged.
import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { stringify as toYaml } from 'yaml';
import { v1 } from '../../src/proto/load.ts';
import type { CoordinatorMessage__Output } from '../../src/proto/load.ts';
import { fromSpecMessage, MAX_SPEC_BYTES, parseJobSpec, validateJobSpec, type JobSpec } from '../../src/spec/job-spec.ts';
import { isStevedoreError } from '../../src/util/errors.ts';
import { anyValue, FuzzTally, fuzzParams, fuzzRuns, mutatedSpecDoc, nastyString, unknownFieldDoc, validSpecDoc } from '../helpers/arbitraries.ts';

/** A case slower than this is a hang, not a slow parse (the machine is shared: single cases reached 325 ms under load). */
const HANG_MS = 1000;
const RUNS = fuzzRuns(2000);
/** Whole specs cost more to build and print: fewer of them by default. */
const SPEC_RUNS = fuzzRuns(600);

/** The outcome of one parse: the spec, or the StevedoreError; anything else thrown is a crash. */
function attempt(tally: FuzzTally, fn: () => JobSpec): { spec: JobSpec } | { error: { code: string; message: string } } {
  return tally.time(HANG_MS, () => {
    try {
      return { spec: fn() };
    } catch (err) {
      if (!isStevedoreError(err)) {
        tally.crashed++;
        throw new Error(`not a StevedoreError: ${String(err)}`, { cause: err });
      }
      return { error: { code: err.code, message: err.message } };
    }
  });
}

/** A refusal is clear when it is SPEC_INVALID, says where, and carries no serialization debris. */
function isClear(error: { code: string; message: string }): boolean {
  const lines = error.message.split('\n');
  return error.code === 'SPEC_INVALID' && /job spec/.test(error.message) && !lines.some((l) => /\[object Object\]|undefined:|^ *:|: Invalid input$/.test(l));
}

/** Printable in TAP output: no raw control or line-separator characters. */
const show = (value: unknown): string => (JSON.stringify(value) ?? String(value)).slice(0, 200).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

const asText = (doc: unknown, yaml: boolean): string => (yaml ? toYaml(doc) : JSON.stringify(doc));

function report(t: Test, tally: FuzzTally, what: string, startMs: number): void {
  t.comment(`${tally.line(what)} in ${Math.round(performance.now() - startMs)} ms`);
  t.equal(tally.crashed, 0, 'no crash');
  t.equal(tally.hung, 0, `no case over ${HANG_MS} ms`);
  t.equal(tally.unclear, 0, 'every refusal is a clear SPEC_INVALID');
}

void t.test('random texts (YAML, JSON, binary) are parsed or refused with SPEC_INVALID, never thrown out', (t) => {
  const tally = new FuzzTally();
  const start = performance.now();
  const text = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 300 }),
    nastyString,
    anyValue.map((v) => JSON.stringify(v) ?? 'null'),
    anyValue.map((v) => toYaml(v)),
    fc.tuple(fc.array(fc.constantFrom('name: ', 'image: ', '- ', '  ', ': ', '{', '}', '[', ']', '&a ', '*a ', '!!str ', '!!binary ', '? ', '|\n', '>\n', '---\n', '...\n', '%YAML 1.2\n', '\n', '"', "'", '\0', '\t', 'x'), { maxLength: 40 })).map(([parts]) => parts.join('')),
  );
  fc.assert(fc.property(text, (input) => {
    const out = attempt(tally, () => parseJobSpec(input, 'fuzz.yaml'));
    if ('error' in out && !isClear(out.error)) {
      tally.unclear++;
      throw new Error(`unclear refusal of ${show(input)}: ${show(out.error)}`);
    }
  }), fuzzParams(RUNS));
  report(t, tally, 'texts', start);
  t.ok(performance.now() - start < 5000 * Math.max(1, RUNS / 2000), 'the whole run stays within 5 s per 2,000 cases');
  t.end();
});

void t.test('a valid spec with one field made wrong is refused with SPEC_INVALID naming that field', (t) => {
  const tally = new FuzzTally();
  const start = performance.now();
  fc.assert(fc.property(mutatedSpecDoc, fc.integer({ min: 0, max: 3 }), ({ doc, path, value }, form) => {
    const yaml = form === 0;
    const out = attempt(tally, () => parseJobSpec(asText(doc, yaml)));
    if ('spec' in out) throw new Error(`${path} = ${show(value)} was accepted`);
    const top = path.split(/[.[]/)[0] ?? path;
    // The message names the field (or, for a union such as command, the field holding it); never only "spec".
    const named = out.error.message.includes(`  ${path}:`) || new RegExp(`^  ${top}[.\\[:]`, 'm').test(out.error.message) || out.error.message.includes('is larger than');
    if (!isClear(out.error) || !named) {
      tally.unclear++;
      throw new Error(`refusal of ${path} = ${show(value)} does not name it: ${show(out.error.message)}`);
    }
  }), fuzzParams(SPEC_RUNS));
  report(t, tally, 'mutated specs', start);
  t.end();
});

void t.test('an unknown field anywhere is refused naming the field and its section', (t) => {
  const tally = new FuzzTally();
  fc.assert(fc.property(unknownFieldDoc, ({ doc, where, key }) => {
    const out = attempt(tally, () => validateJobSpec(doc));
    if ('spec' in out) throw new Error(`unknown field ${where}.${key} accepted`);
    const line = out.error.message.split('\n').find((l) => l.includes(`"${key}"`));
    if (!line || !line.startsWith(`  ${where || 'spec'}:`) || !/check the spelling/.test(line)) {
      tally.unclear++;
      throw new Error(`unknown field ${where}.${key}: ${out.error.message}`);
    }
  }), fuzzParams(fuzzRuns(1000)));
  t.equal(tally.crashed + tally.unclear + tally.hung, 0, tally.line('specs with unknown fields'));
  t.end();
});

/** Serializes a start command as the coordinator does and decodes it as the agent does. */
function overTheWire(spec: JobSpec): unknown {
  const method = v1.AgentSession.service.Connect;
  const bytes = method.responseSerialize({ command: { commandId: 'c1', startJob: { jobId: 'j1', attempt: 1, spec, resume: false } } });
  const back: CoordinatorMessage__Output = method.responseDeserialize(bytes);
  return back.command?.startJob?.spec;
}

void t.test('valid generated specs parse, and survive the wire unchanged (parse -> message -> fromSpecMessage)', (t) => {
  const tally = new FuzzTally();
  const start = performance.now();
  fc.assert(fc.property(validSpecDoc, fc.integer({ min: 0, max: 3 }), (doc, form) => {
    const yaml = form === 0;
    const out = attempt(tally, () => parseJobSpec(asText(doc, yaml)));
    if ('error' in out) throw new Error(`valid spec refused: ${out.error.message}\n${asText(doc, true)}`);
    const again = fromSpecMessage(overTheWire(out.spec));
    if (!isDeepStrictEqual(again, out.spec)) throw new Error(`the spec changed over the wire:\n${JSON.stringify(out.spec)}\n${JSON.stringify(again)}`);
  }), fuzzParams(SPEC_RUNS));
  t.comment(`${tally.line('valid specs')} in ${Math.round(performance.now() - start)} ms`);
  t.equal(tally.crashed + tally.hung, 0, 'no crash, no hang');
  t.end();
});

void t.test('structural attacks: alias bombs, deep nesting, long strings, NUL bytes', (t) => {
  const tally = new FuzzTally();
  // "Billion laughs": each level doubles ten times; expanded it would be 10^9 strings.
  const laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
  for (let i = 1; i <= 9; i++) {
    const prev = String.fromCharCode(96 + i);
    const cur = String.fromCharCode(97 + i);
    laughs.push(`${cur}: &${cur} [${Array.from({ length: 10 }, () => `*${prev}`).join(',')}]`);
  }
  const cases: [string, string, RegExp][] = [
    ['billion laughs', `${laughs.join('\n')}\nname: x\nimage: busybox\n`, /not valid YAML or JSON: .*alias/i],
    ['aliases in the spec itself', 'e: &e {A: "1"}\nname: x\nimage: busybox\nenv: *e\n', /unknown field "e"/],
    ['deep flow nesting', `name: x\nimage: busybox\ncommand: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`, /nested too deeply/],
    ['deep JSON nesting', `{"name":"x","image":"busybox","env":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}`, /nested too deeply/],
    ['deep block nesting', `name: x\nimage: busybox\nenv:\n${Array.from({ length: 600 }, (_, i) => `${' '.repeat(i + 1)}k${i}:`).join('\n')} 1\n`, /env\.k0: environment values are strings/],
    ['a duplicate key', 'name: x\nimage: busybox\nname: y\n', /"name" is repeated/],
    ['25,000 keys', `name: x\nimage: busybox\n${Array.from({ length: 23_000 }, (_, i) => `f${i}: 1`).join('\n')}\n`, /unknown fields "f0", .* and 22990 more: check the spelling/],
    ['NUL in the name', 'name: "a\\0b"\nimage: busybox\n', /name: must be/],
    ['NUL in a mount source', 'name: x\nimage: busybox\nmounts: [{source: "a\\0b", target: /d}]\n', /mounts\[0\]\.source: contains a NUL byte/],
    ['a raw NUL byte', 'name: x\0\nimage: busybox\n', /./],
    ['a string just over a field limit', `name: x\nimage: busybox\nworkingDir: /${'a'.repeat(1024)}\n`, /workingDir:/],
    ['a huge env value under the spec limit', `name: x\nimage: busybox\nenv: {A: "${'v'.repeat(200_000)}"}\n`, /^$/],
    ['1e400 gpus', 'name: x\nimage: busybox\nresources: {gpus: 1e400}\n', /resources\.gpus:/],
    ['.nan cpus', 'name: x\nimage: busybox\nresources: {cpus: .nan}\n', /resources\.cpus:/],
    ['a document stream', 'name: x\nimage: busybox\n---\nname: y\n', /not valid YAML or JSON/],
    ['a tagged binary value', 'name: x\nimage: busybox\ncommand: !!binary aGVsbG8=\n', /command: must be a list of at most 256 strings/],
    ['a merge key', 'base: &b {gpus: 1}\nname: x\nimage: busybox\nresources: {<<: *b}\n', /unknown field "base"/],
  ];
  for (const [what, text, expect] of cases) {
    const out = attempt(tally, () => parseJobSpec(text, 'attack.yaml'));
    if (expect.source === '^$') {
      t.ok('spec' in out, `${what}: accepted (within the limits)`);
      continue;
    }
    if ('spec' in out) {
      t.fail(`${what}: accepted`);
      continue;
    }
    t.equal(out.error.code, 'SPEC_INVALID', `${what}: SPEC_INVALID`);
    t.match(out.error.message, expect, `${what}: ${out.error.message.split('\n').slice(0, 2).join(' / ').slice(0, 160)}`);
  }
  t.equal(tally.crashed, 0, 'no crash');
  // Bounded by the size limit: the worst (deep nesting up to the stack's end) takes about 0.5 s on 2 busy cores.
  t.ok(tally.slowestMs < 5000, `every attack is answered within 5 s (slowest ${tally.slowestMs.toFixed(0)} ms)`);
  t.end();
});

void t.test('size limit: a spec of exactly MAX_SPEC_BYTES is read, one byte more is refused before parsing', (t) => {
  const head = 'name: x\nimage: busybox\ncommand: "';
  const tail = '"\n';
  // The command is at most 65,536 characters; the rest of the budget goes into a comment.
  const cmd = 'c'.repeat(60_000);
  const body = `${head}${cmd}${tail}#`;
  const atLimit = body + 'p'.repeat(MAX_SPEC_BYTES - Buffer.byteLength(body));
  t.equal(Buffer.byteLength(atLimit), MAX_SPEC_BYTES);
  t.equal(parseJobSpec(atLimit).command.at(-1)?.length, 60_000, 'at the limit: parsed');
  const over = `${atLimit}p`;
  try {
    parseJobSpec(over, 'big.yaml');
    t.fail('one byte over the limit was parsed');
  } catch (err) {
    t.ok(isStevedoreError(err, 'SPEC_INVALID'), 'SPEC_INVALID');
    t.match((err as Error).message, `job spec big.yaml is larger than ${MAX_SPEC_BYTES} bytes`);
  }
  // Multi-byte characters count as bytes, not characters.
  const wide = `${head}${'é'.repeat(MAX_SPEC_BYTES / 2)}${tail}`;
  t.ok(wide.length < MAX_SPEC_BYTES && Buffer.byteLength(wide) > MAX_SPEC_BYTES, 'fewer characters than the limit, more bytes');
  t.throws(() => parseJobSpec(wide), { code: 'SPEC_INVALID', message: /larger than/ });
  // A document (the wire path) is measured as JSON: env values that add up past the limit.
  const env = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`V${i}`, 'x'.repeat(7000)]));
  t.throws(() => validateJobSpec({ name: 'x', image: 'busybox', env }), { code: 'SPEC_INVALID', message: /job spec is \d+ bytes; the limit is 262144/ });
  t.end();
});
