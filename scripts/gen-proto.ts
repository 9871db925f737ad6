// Regenerates src/gen/ from proto/. Never edit src/gen/ by hand: run `npm run gen`.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');

/** The options shared by code generation and the runtime loader (src/proto/load.ts). */
export function generate(outDir: string): void {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const protoDir = path.join(root, 'proto');
  const files = readdirSync(path.join(protoDir, 'stevedore', 'v1'))
    .filter((f) => f.endsWith('.proto'))
    .sort()
    .map((f) => `stevedore/v1/${f}`);
  execFileSync(
    process.execPath,
    [
      path.join(root, 'node_modules', '@grpc', 'proto-loader', 'build', 'bin', 'proto-loader-gen-types.js'),
      '--longs=Number', '--enums=String', '--defaults', '--oneofs', '--keepCase=false',
      '--grpcLib=@grpc/grpc-js', '-I', protoDir, '-O', outDir, ...files,
    ],
    { stdio: 'inherit', cwd: root },
  );
  // Make the output valid under nodenext resolution and independent of the checkout's location.
  for (const rel of readdirSync(outDir, { recursive: true, encoding: 'utf8' })) {
    if (!rel.endsWith('.ts')) continue;
    const file = path.join(outDir, rel);
    const text = readFileSync(file, 'utf8')
      .replace(/from '(\.\.?\/[^']+)'/g, "from '$1.ts'")
      .replaceAll(`${protoDir}/`, 'proto/');
    writeFileSync(file, text);
  }
}

if (import.meta.main) {
  generate(path.join(root, 'src', 'gen'));
}
