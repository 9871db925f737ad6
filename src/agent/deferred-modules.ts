// Modules the agent would load at start for nothing, kept unloaded.
//
// prom-client requires the OpenTelemetry API (@opentelemetry/api, 51 modules:
// about 1.5 MB of heap and 5 MB of the node binary's pages) when it loads, for
// exemplars, which the agent never turns on. Imported before prom-client, this
// module puts a stand-in in require's cache: the real API is loaded at the
// first use of any of its properties, that is, only if exemplars are ever used.
//
// node:http's WebSocket, CloseEvent and MessageEvent are getters that load
// undici (Node's fetch and WebSocket, 760 KB of source). The first ESM import
// of node:http builds its named exports by reading every property once, and
// so loads undici: about 12 MB of resident memory (6 MB of heap and compiled
// code, 6 MB of the node binary's pages) for classes the agent never uses.
// This module builds those named exports first, with the three getters
// answering undefined for that one read, then puts the getters back:
// `http.WebSocket` still works (and loads undici) if anything ever asks.
// That works only if it runs before any ESM module importing node:http is
// loaded: the agent command imports it (src/cli/main.ts) before the agent's
// modules; imported later, it changes nothing.
import Module, { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The path of the OpenTelemetry API as prom-client resolves it. */
export const OTEL_API_PATH = createRequire(require.resolve('prom-client')).resolve('@opentelemetry/api');

let real: Record<string | symbol, unknown> | undefined;

/** Whether the real OpenTelemetry API has been loaded. */
export function otelApiLoaded(): boolean {
  return real !== undefined;
}

function loadReal(): Record<string | symbol, unknown> {
  if (!real) {
    const standIn = require.cache[OTEL_API_PATH];
    delete require.cache[OTEL_API_PATH];
    try {
      real = require(OTEL_API_PATH) as Record<string | symbol, unknown>;
    } finally {
      if (standIn) require.cache[OTEL_API_PATH] = standIn;
    }
  }
  return real;
}

if (!require.cache[OTEL_API_PATH]) {
  const standIn = new Module(OTEL_API_PATH);
  standIn.filename = OTEL_API_PATH;
  standIn.loaded = true;
  standIn.exports = new Proxy({}, {
    get: (_target, key) => loadReal()[key],
    has: (_target, key) => key in loadReal(),
    ownKeys: () => Reflect.ownKeys(loadReal()),
    getOwnPropertyDescriptor: (_target, key) => {
      const descriptor = Reflect.getOwnPropertyDescriptor(loadReal(), key);
      // A proxy may not report a property its (empty) target lacks as non-configurable.
      return descriptor ? { ...descriptor, configurable: true } : undefined;
    },
  });
  require.cache[OTEL_API_PATH] = standIn;
}

/** node:http's exports that load undici when read. */
const HTTP_UNDICI_EXPORTS = ['WebSocket', 'CloseEvent', 'MessageEvent'];

async function importHttpWithoutUndici(): Promise<void> {
  const http = require('node:http') as object;
  const saved = new Map<string, PropertyDescriptor>();
  for (const name of HTTP_UNDICI_EXPORTS) {
    const descriptor = Object.getOwnPropertyDescriptor(http, name);
    if (!descriptor?.get || !descriptor.configurable) continue;
    saved.set(name, descriptor);
    Object.defineProperty(http, name, { ...descriptor, get: () => undefined });
  }
  try {
    await import('node:http');
  } finally {
    for (const [name, descriptor] of saved) Object.defineProperty(http, name, descriptor);
  }
}

await importHttpWithoutUndici();
