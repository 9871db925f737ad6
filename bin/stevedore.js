#!/usr/bin/env node
// Entry point for `stevedore`: runs the TypeScript sources directly (Node >= 22.18 strips types).
import { main } from '../src/cli/main.ts';

process.exitCode = await main(process.argv.slice(2));
