import type { Command } from 'commander';
import { VERSION } from '../../version.ts';
import { PROTOCOL_VERSION } from '../../proto/load.ts';
import { printJson } from '../output.ts';

export function registerVersion(program: Command): void {
  program
    .command('version')
    .description('print the version of stevedore and of its protocol')
    .option('--json', 'print JSON')
    .action((opts: { json?: boolean }) => {
      const info = { version: VERSION, protocol: `stevedore.v${PROTOCOL_VERSION}`, node: process.version };
      if (opts.json) printJson(info);
      else process.stdout.write(`stevedore ${info.version} (protocol ${info.protocol}, Node.js ${info.node})\n`);
    });
}
