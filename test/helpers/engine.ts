// What tests need to use the real test engine started by scripts/with-test-env.ts.
// Docker tests never skip: without the engine they fail and say how to run them.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface TestEngineEnv {
  /** unix://<socket>, for DockerEngine({ dockerHost }). */
  dockerHost: string;
  socketPath: string;
  /** The stand-in NVIDIA hook's record file: one JSON line per GPU container. */
  gpuRecordPath: string;
  /** The training stand-in image, already built. */
  trainerImage: string;
}

/** The test engine's coordinates; throws when the tests were not started through `npm test`. */
export function testEngineEnv(): TestEngineEnv {
  const env = process.env;
  const values = {
    DOCKER_HOST: env.DOCKER_HOST,
    STEVEDORE_TEST_DOCKER_SOCKET: env.STEVEDORE_TEST_DOCKER_SOCKET,
    STEVEDORE_TEST_GPU_RECORD: env.STEVEDORE_TEST_GPU_RECORD,
    STEVEDORE_TEST_TRAINER_IMAGE: env.STEVEDORE_TEST_TRAINER_IMAGE,
  };
  const missing = Object.entries(values).filter(([, value]) => value === undefined || value === '').map(([name]) => name);
  if (missing.length > 0) {
    throw new Error(
      `${missing.join(', ')} not set: run the tests with \`npm test\`, which starts the engine ` +
        '(or `node scripts/with-test-env.ts tap <files>` for some of them)',
    );
  }
  return {
    dockerHost: values.DOCKER_HOST as string,
    socketPath: values.STEVEDORE_TEST_DOCKER_SOCKET as string,
    gpuRecordPath: values.STEVEDORE_TEST_GPU_RECORD as string,
    trainerImage: values.STEVEDORE_TEST_TRAINER_IMAGE as string,
  };
}

/** One line of the stand-in hook's record. */
export interface GpuRecord {
  containerId: string;
  visibleDevices: string[];
  jobId: string | null;
  attempt: string | null;
  time: string;
}

/** The hook's records, optionally only those of one container. */
export function gpuRecords(containerId?: string): GpuRecord[] {
  let text: string;
  try {
    text = readFileSync(testEngineEnv().gpuRecordPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as GpuRecord)
    .filter((record) => containerId === undefined || record.containerId === containerId);
}

/** A container name no other test (or concurrent run) uses. */
export function uniqueName(prefix: string): string {
  return `stevedore-test-${prefix}-${randomBytes(4).toString('hex')}`;
}
