import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
// First, as in the agent: before anything loads prom-client.
import { OTEL_API_PATH, otelApiLoaded } from '../../src/agent/deferred-modules.ts';
import { Registry, type OpenMetricsContentType } from 'prom-client';
import t from 'tap';
import { AgentMetrics } from '../../src/agent/agent-metrics.ts';

const otelRequire = createRequire(OTEL_API_PATH);
const otelModules = (): string[] => Object.keys(otelRequire.cache).filter((file) => file.includes('/@opentelemetry/api/') && file !== OTEL_API_PATH);

void t.test("the agent's metrics load prom-client without the OpenTelemetry API", async (t) => {
  const metrics = new AgentMetrics({ attemptStates: () => [], gpus: () => ({ total: 0, allocated: 0, unhealthy: 0 }), eventsPending: () => 0, sessionConnected: () => true, sessionReconnects: () => 0 }, { version: 'test' });
  const text = await metrics.registry.metrics();
  t.match(text, /process_cpu_user_seconds_total/, 'process metrics (the collector that requires the API) are served');
  t.equal(otelApiLoaded(), false);
  t.same(otelModules(), [], 'no module of @opentelemetry/api in require.cache');
});

void t.test('exemplars load the real API through the stand-in', async (t) => {
  const processCpuTotal = createRequire(createRequire(import.meta.url).resolve('prom-client'))('./lib/metrics/processCpuTotal.js') as (registry: Registry<OpenMetricsContentType>, config: object) => void;
  // Exemplars exist in the OpenMetrics format only.
  const registry = new Registry<OpenMetricsContentType>();
  registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  processCpuTotal(registry, { enableExemplars: true });
  t.match(await registry.metrics(), /process_cpu_user_seconds_total/);
  t.equal(otelApiLoaded(), true);
  t.not(otelModules().length, 0, 'the real modules are loaded');
});

void t.test('node:http imported as an ES module after it does not load undici, and http.WebSocket still works', (t) => {
  // A process of its own: this one has imported node:http already.
  const src = path.resolve(import.meta.dirname, '../../src');
  const script = [
    `await import(${JSON.stringify(path.join(src, 'agent/deferred-modules.ts'))});`,
    `const { StatusHttpServer } = await import(${JSON.stringify(path.join(src, 'util/status-http-server.ts'))});`,
    "const { request } = await import('node:http');",
    "const undici = () => process.moduleLoadList.some((m) => m.includes('internal/deps/undici'));",
    'const before = undici();',
    "const http = (await import('node:module')).createRequire(import.meta.url)('node:http');",
    'const webSocket = typeof http.WebSocket;',
    'console.log(JSON.stringify({ server: typeof StatusHttpServer, request: typeof request, before, webSocket, after: undici() }));',
  ].join('\n');
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as Record<string, unknown>;
  t.same(out, { server: 'function', request: 'function', before: false, webSocket: 'function', after: true });
  t.end();
});
