// The Dockerfile cannot be built on the test machine (no registry to pull
// node:24 from), so it is checked the way a reviewer would: the VS Code
// Docker language server's validator finds nothing, the base is Node.js 24,
// the image runs as a user of its own with an exec-form entrypoint and a
// health check, and everything it copies exists and is in the build context.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { validate } from 'dockerfile-utils';

const REPO = path.resolve(import.meta.dirname, '..');
const DOCKERFILE = readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
const DOCKERIGNORE = readFileSync(path.join(REPO, '.dockerignore'), 'utf8');
const VERSION = (JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

/** Instructions with their continuation lines joined; comments dropped. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let current: Instruction | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && current === undefined)) return;
    const continued = line.endsWith('\\');
    const body = continued ? line.slice(0, -1).trim() : line;
    if (current === undefined) {
      const m = /^(\S+)\s*(.*)$/.exec(body);
      current = { keyword: (m?.[1] ?? '').toUpperCase(), args: m?.[2] ?? '', line: i + 1 };
    } else {
      current.args = `${current.args} ${body}`.trim();
    }
    if (!continued) {
      out.push(current);
      current = undefined;
    }
  });
  if (current !== undefined) out.push(current);
  return out;
}

/** The instructions of the last stage (the image that is shipped). */
function finalStage(list: Instruction[]): Instruction[] {
  const from = list.findLastIndex((i) => i.keyword === 'FROM');
  return list.slice(from);
}

/** .dockerignore: is `file` (relative to the context) left out? Last matching pattern wins; `!` re-includes. */
function ignored(file: string, patterns: string): boolean {
  const rules = patterns
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const glob = path.posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, ''));
      const re = glob
        .split('')
        .map((c, i, all) => (c === '*' ? (all[i + 1] === '*' ? '' : all[i - 1] === '*' ? '.*' : '[^/]*') : c === '?' ? '[^/]' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('');
      return { negate, re: new RegExp(`^${re}$`) };
    });
  // A pattern that matches a directory leaves out everything inside it.
  const parts = path.posix.normalize(file).split('/');
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let out = false;
  for (const rule of rules) {
    if (prefixes.some((p) => rule.re.test(p))) out = !rule.negate;
  }
  return out;
}

/** What a reviewer checks beyond the validator; each problem as a sentence. */
function review(text: string, dockerignore: string): string[] {
  const problems: string[] = [];
  const all = instructions(text);
  for (const from of all.filter((i) => i.keyword === 'FROM')) {
    const image = from.args.split(/\s+/).find((w) => !w.startsWith('--')) ?? '';
    if (!/^node:24(\.\d+)*-bookworm-slim(@sha256:[0-9a-f]{64})?$/.test(image)) problems.push(`line ${from.line}: base image ${image} is not node:24-bookworm-slim`);
  }
  const last = finalStage(all);
  const user = last.findLast((i) => i.keyword === 'USER')?.args;
  if (user === undefined) problems.push('no USER in the final stage: the image would run as root');
  else if (/^(root|0)(:|$)/.test(user)) problems.push(`USER ${user} is root`);
  const entrypoint = last.findLast((i) => i.keyword === 'ENTRYPOINT');
  let entry: unknown;
  try {
    entry = entrypoint && JSON.parse(entrypoint.args);
  } catch {
    entry = undefined;
  }
  if (!Array.isArray(entry) || entry.length === 0) problems.push('ENTRYPOINT is not in exec form (a JSON array): signals would go to a shell, not to the agent');
  const health = last.findLast((i) => i.keyword === 'HEALTHCHECK');
  if (health === undefined || !/\bCMD\b/.test(health.args)) problems.push('no HEALTHCHECK CMD');
  for (const copy of last.filter((i) => i.keyword === 'COPY' || i.keyword === 'ADD')) {
    const words = copy.args.split(/\s+/);
    if (words.some((w) => w.startsWith('--from='))) continue;
    const sources = words.filter((w) => !w.startsWith('--')).slice(0, -1);
    for (const source of sources) {
      if (!existsSync(path.join(REPO, source))) problems.push(`line ${copy.line}: COPY source ${source} does not exist`);
      else if (ignored(source, dockerignore)) problems.push(`line ${copy.line}: COPY source ${source} is excluded by .dockerignore`);
    }
  }
  return problems;
}

/** The files copied into the final image from the build context. */
function copiedPaths(text: string): string[] {
  return finalStage(instructions(text))
    .filter((i) => i.keyword === 'COPY' && !/--from=/.test(i.args))
    .flatMap((i) => i.args.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1))
    .map((p) => path.posix.normalize(p).replace(/\/$/, ''));
}

/** Every source file the CLI loads, following relative imports from bin/stevedore.js. */
function importGraph(entry: string): string[] {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(path.join(REPO, file), 'utf8');
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.{1,2}\/[^']+)'/g)) {
      const target = path.posix.join(path.posix.dirname(file), m[1]!);
      // dist/ is the build of src/, made in the image's build stage (checked below).
      if (!target.startsWith('dist/')) queue.push(target);
    }
  }
  return [...seen];
}

void t.test('the validator of the VS Code Docker language server finds no problem', (t) => {
  t.same(validate(DOCKERFILE), []);
  t.end();
});

void t.test('Node.js 24, a user of its own, exec-form entrypoint, health check, copies that exist', (t) => {
  t.same(review(DOCKERFILE, DOCKERIGNORE), []);
  const last = finalStage(instructions(DOCKERFILE));
  t.equal(last.findLast((i) => i.keyword === 'USER')?.args, 'node');
  t.same(JSON.parse(last.findLast((i) => i.keyword === 'ENTRYPOINT')?.args ?? '[]'), ['node', '/opt/stevedore/bin/stevedore.js']);
  const health = last.findLast((i) => i.keyword === 'HEALTHCHECK')?.args ?? '';
  t.match(health, /\bCMD \[/, 'exec form: no shell needed in the image');
  t.match(DOCKERFILE, /STEVEDORE_HEALTHCHECK_URL=http:\/\/127\.0\.0\.1:9464\/readyz/, "the agent's readiness endpoint by default");
  const labels = last.filter((i) => i.keyword === 'LABEL').map((i) => i.args).join(' ');
  for (const key of ['title', 'description', 'version', 'licenses']) t.match(labels, `org.opencontainers.image.${key}=`);
  t.match(labels, `org.opencontainers.image.version="${VERSION}"`, 'the version of package.json');
  t.end();
});

void t.test('everything the CLI loads is copied into the image', (t) => {
  const copied = copiedPaths(DOCKERFILE);
  const files = importGraph('bin/stevedore.js');
  t.ok(files.length > 20, `${files.length} files`);
  const missing = files.filter((f) => !copied.some((c) => f === c || f.startsWith(`${c}/`)));
  t.same(missing, [], 'each under a COPY');
  t.ok(copied.includes('proto'), 'the .proto files the gRPC services load at run time');
  t.ok(copied.includes('package.json'), '"type": "module"');
  t.end();
});

void t.test('the image runs the JavaScript build of src/, made in a build stage', (t) => {
  const all = instructions(DOCKERFILE);
  const stages = all.filter((i) => i.keyword === 'FROM').map((i) => i.args);
  t.ok(stages.some((s) => /\bAS build$/i.test(s)), 'a build stage');
  const buildStage = all.slice(all.findIndex((i) => i.keyword === 'FROM' && /\bAS build$/i.test(i.args)));
  t.ok(buildStage.some((i) => i.keyword === 'RUN' && i.args.includes('node scripts/build.ts')), 'it runs scripts/build.ts');
  t.notOk(ignored('scripts/build.ts', DOCKERIGNORE), 'scripts/build.ts is in the context');
  t.ok(ignored('dist/cli/main.js', DOCKERIGNORE), 'a local dist/ stays out: the image builds its own');
  const last = finalStage(all);
  t.ok(last.some((i) => i.keyword === 'COPY' && /--from=build\s+\/opt\/stevedore\/dist\s+\.\/dist$/.test(i.args)), 'dist/ copied into the image');
  t.match(last.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' '), /STEVEDORE_RUN_FROM=dist/, 'bin/stevedore.js runs dist/ whatever the files\' times');
  t.ok(importGraph('bin/stevedore.js').length > 20, 'the sources stay in the image too (STEVEDORE_RUN_FROM=src)');
  t.end();
});

void t.test('.dockerignore keeps the context small and the copied paths in it', (t) => {
  for (const out of ['node_modules', 'node_modules/yaml/package.json', '.git', 'test/dockerfile.test.ts', '.tap', 'coverage', 'x.log']) t.ok(ignored(out, DOCKERIGNORE), `${out} left out`);
  for (const inside of ['package.json', 'package-lock.json', 'bin/stevedore.js', 'src/cli/main.ts', 'proto/stevedore/v1/common.proto']) t.notOk(ignored(inside, DOCKERIGNORE), `${inside} in the context`);
  t.ok(ignored('src/a.ts', 'src\n'), 'a directory pattern covers its files');
  t.notOk(ignored('src/a.ts', 'src\n!src/a.ts\n'), '! re-includes');
  t.end();
});

void t.test('a broken Dockerfile is reported: the checks can fail', (t) => {
  const broken = ['FROM node:20-bullseye', 'COPY src', 'COPY nosuchdir ./x', 'COPY test ./test', 'ENTRYPOINT node bin/stevedore.js', 'FOO bar', ''].join('\n');
  const messages = validate(broken).map((d) => d.message);
  t.match(messages, [/COPY requires at least two arguments/, /Unknown instruction: FOO/]);
  const problems = review(broken, DOCKERIGNORE);
  t.match(problems, [
    /base image node:20-bullseye is not node:24-bookworm-slim/,
    /no USER in the final stage/,
    /ENTRYPOINT is not in exec form/,
    /no HEALTHCHECK CMD/,
    /COPY source nosuchdir does not exist/,
    /COPY source test is excluded by \.dockerignore/,
  ]);
  t.same(review(`${DOCKERFILE}\nUSER root\n`, DOCKERIGNORE), ['USER root is root']);
  t.end();
});
